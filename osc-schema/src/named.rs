//! Closed vocabularies on the wire (fade curves, MIDI modes, MIDI actions): each a table of
//! `(value, name, doc)` rows, looked up both ways here.
//!
//! Threading: plain functions over static tables.

/// One row: the value, its name on the wire, one line of doc.
pub(crate) type Named<T> = (T, &'static str, &'static str);

/// The value named `name`.
pub(crate) fn find<T: Copy>(table: &[Named<T>], name: &str) -> Option<T> {
    table
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(v, _, _)| *v)
}

/// Every name, comma-separated, for an error that lists them.
pub(crate) fn listed<T>(table: &[Named<T>]) -> String {
    let names: Vec<&str> = table.iter().map(|(_, n, _)| *n).collect();
    names.join(", ")
}

/// The name of `value` (every value has a row; `""` for one that has none).
pub(crate) fn name_of<T: PartialEq>(table: &[Named<T>], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _, _)| *v == value)
        .map_or("", |(_, n, _)| n)
}
