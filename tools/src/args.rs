//! Command-line words to OSC arguments. Explicit types win (`f:0.5`, `d:0.5`, `i:3`,
//! `h:4000000000`, `s:text`); otherwise the schema types them: a knob takes `f`, or `i`/`d`
//! for integer knobs (the same tag the server replies with), and fixed addresses take what
//! their table row says. A pattern (`/knob/ch_g*`) is typed by the first address it matches.
//! Ranges are not checked here: the server's `/fail` says what is accepted.
//!
//! Threading: pure functions.

use latentd_osc_schema::pattern;
use latentd_osc_schema::rosc::OscType;
use latentd_osc_schema::table::{ArgType, spec};
use latentd_osc_schema::{Endpoint, Schema};

/// The OSC arguments for `words` sent to `address`, or why they cannot be built.
pub fn typed_args(
    schema: &Schema,
    address: &str,
    words: &[String],
) -> Result<Vec<OscType>, String> {
    if !address.starts_with('/') {
        return Err(format!("address {address:?} must start with '/'"));
    }
    let endpoint = find_endpoint(schema, address);
    let slots = endpoint.map(|e| slot_types(schema, e));
    if let Some(slots) = &slots
        && words.len() > slots.len()
    {
        return Err(format!(
            "{address} takes at most {} argument(s), got {}",
            slots.len(),
            words.len()
        ));
    }
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            if let Some(arg) = explicit(word)? {
                return Ok(arg);
            }
            match slots.as_ref().map(|s| s[i]) {
                Some((name, tag)) => typed(word, tag)
                    .map_err(|why| format!("{address} argument {} ({name}): {why}", i + 1)),
                None => Err(format!(
                    "{address} is not in the schema; give each argument a type \
                     (f:0.5 d:0.5 i:3 h:3 s:text) to send it anyway"
                )),
            }
        })
        .collect()
}

fn find_endpoint<'a>(schema: &'a Schema, address: &str) -> Option<&'a Endpoint> {
    if pattern::is_pattern(address) {
        schema
            .endpoints()
            .iter()
            .find(|e| pattern::matches(address, &e.address))
    } else {
        schema.endpoint(address)
    }
}

/// `(argument name, type tag)` for each argument the endpoint takes.
fn slot_types(schema: &Schema, endpoint: &Endpoint) -> Vec<(&'static str, char)> {
    if let Some(index) = endpoint.knob {
        return vec![("value", schema.knobs()[index].reply_tag())];
    }
    spec(endpoint.route)
        .args
        .iter()
        .map(|a| {
            let tag = match a.ty {
                ArgType::Number => 'f',
                ArgType::Int => 'i',
                ArgType::Str => 's',
            };
            (a.name, tag)
        })
        .collect()
}

/// `Some` when `word` carries an explicit `<tag>:` prefix.
fn explicit(word: &str) -> Result<Option<OscType>, String> {
    let mut chars = word.chars();
    let (Some(tag), Some(':')) = (chars.next(), chars.next()) else {
        return Ok(None);
    };
    if !"fdihs".contains(tag) {
        return Ok(None);
    }
    typed(&word[2..], tag)
        .map(Some)
        .map_err(|why| format!("{word:?}: {why}"))
}

fn typed(text: &str, tag: char) -> Result<OscType, String> {
    let number = |kind: &str| format!("{text:?} is not {kind}");
    Ok(match tag {
        'f' => OscType::Float(finite(text).map_err(|_| number("a number"))? as f32),
        'd' => OscType::Double(finite(text).map_err(|_| number("a number"))?),
        'i' => OscType::Int(integral(text, number("an integer in int32 range"))?),
        'h' => OscType::Long(integral(text, number("an integer in int64 range"))?),
        _ => OscType::String(text.to_string()),
    })
}

fn finite(text: &str) -> Result<f64, ()> {
    text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or(())
}

/// Integers, also written as integral floats (`3.0`, `4e9`).
fn integral<T: TryFrom<i64> + std::str::FromStr>(text: &str, error: String) -> Result<T, String> {
    if let Ok(v) = text.parse::<T>() {
        return Ok(v);
    }
    let v = finite(text).map_err(|_| error.clone())?;
    if v.fract() != 0.0 || v.abs() > 9.0e18 {
        return Err(error);
    }
    T::try_from(v as i64).map_err(|_| error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use latentd_osc_schema::reference_knobs;

    fn args(address: &str, words: &[&str]) -> Result<Vec<OscType>, String> {
        let schema = Schema::new(reference_knobs()).unwrap();
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        typed_args(&schema, address, &words)
    }

    #[test]
    fn the_schema_types_bare_words() {
        assert_eq!(
            args("/knob/denoise", &["0.5"]),
            Ok(vec![OscType::Float(0.5)])
        );
        assert_eq!(args("/knob/steps", &["12"]), Ok(vec![OscType::Int(12)]));
        assert_eq!(args("/knob/steps", &["12.0"]), Ok(vec![OscType::Int(12)]));
        assert_eq!(
            args("/knob/seed", &["4000000000"]),
            Ok(vec![OscType::Double(4e9)])
        );
        assert_eq!(args("/knob/ch_g*", &["2"]), Ok(vec![OscType::Float(2.0)]));
        assert_eq!(
            args("/loop", &["1", "2.5"]),
            Ok(vec![OscType::Float(1.0), OscType::Float(2.5)])
        );
        assert_eq!(args("/notify", &["1"]), Ok(vec![OscType::Int(1)]));
        assert_eq!(
            args("/prompt", &["techno, dub", "ambient"]),
            Ok(vec![
                OscType::String("techno, dub".into()),
                OscType::String("ambient".into())
            ])
        );
        assert_eq!(args("/status", &[]), Ok(vec![]));
    }

    #[test]
    fn explicit_types_win() {
        assert_eq!(
            args("/knob/denoise", &["i:3", "s:x", "d:0.25", "h:-7"]).unwrap_err(),
            "/knob/denoise takes at most 1 argument(s), got 4"
        );
        assert_eq!(args("/knob/denoise", &["i:3"]), Ok(vec![OscType::Int(3)]));
        assert_eq!(
            args("/custom", &["s:hello", "h:-7", "d:0.25", "f:1e-3"]),
            Ok(vec![
                OscType::String("hello".into()),
                OscType::Long(-7),
                OscType::Double(0.25),
                OscType::Float(1e-3)
            ])
        );
        // A prompt word that merely looks like a prefix is still a string.
        assert_eq!(
            args("/prompt", &["x:y"]),
            Ok(vec![OscType::String("x:y".into())])
        );
    }

    #[test]
    fn bad_words_name_the_argument() {
        assert_eq!(
            args("/knob/denoise", &["loud"]).unwrap_err(),
            "/knob/denoise argument 1 (value): \"loud\" is not a number"
        );
        assert_eq!(
            args("/knob/steps", &["2.5"]).unwrap_err(),
            "/knob/steps argument 1 (value): \"2.5\" is not an integer in int32 range"
        );
        assert_eq!(
            args("/loop", &["1", "inf"]).unwrap_err(),
            "/loop argument 2 (b_seconds): \"inf\" is not a number"
        );
        assert_eq!(
            args("/x", &["i:zz"]).unwrap_err(),
            "\"i:zz\": \"zz\" is not an integer in int32 range"
        );
        assert!(
            args("/custom", &["1"])
                .unwrap_err()
                .contains("not in the schema")
        );
        assert!(
            args("knob", &[])
                .unwrap_err()
                .contains("must start with '/'")
        );
    }
}
