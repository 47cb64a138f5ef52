//! OSC 1.0 address pattern matching: `?`, `*`, `[abc]`, `[a-z]`, `[!abc]`, `{foo,bar}`.
//! `*` and `?` never match `/`. Matching is memoised, so hostile patterns stay linear in
//! pattern length times address length.
//!
//! Threading: pure functions; usable from any thread.

/// True when `address` contains any pattern character.
pub fn is_pattern(address: &str) -> bool {
    address
        .bytes()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b'{'))
}

/// Check a pattern's syntax; the error names the problem and its byte offset.
pub fn validate(pattern: &str) -> Result<(), String> {
    let bytes = pattern.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("address must start with '/'".to_string());
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => {
                let close = find(bytes, i + 1, b']')
                    .ok_or_else(|| format!("unclosed '[' at byte {i} of the address pattern"))?;
                let body = &bytes[i + 1..close];
                let body = body.strip_prefix(b"!").unwrap_or(body);
                if body.is_empty() {
                    return Err(format!("empty '[]' at byte {i} of the address pattern"));
                }
                if body.contains(&b'/') {
                    return Err(format!(
                        "'/' inside '[]' at byte {i} of the address pattern"
                    ));
                }
                i = close + 1;
            }
            b'{' => {
                let close = find(bytes, i + 1, b'}')
                    .ok_or_else(|| format!("unclosed '{{' at byte {i} of the address pattern"))?;
                let body = &bytes[i + 1..close];
                if body
                    .iter()
                    .any(|b| matches!(b, b'{' | b'[' | b'*' | b'?' | b'/'))
                {
                    return Err(format!(
                        "'{{...}}' at byte {i} may only hold literal alternatives"
                    ));
                }
                i = close + 1;
            }
            b']' | b'}' => {
                return Err(format!(
                    "unmatched '{}' at byte {i} of the address pattern",
                    bytes[i] as char
                ));
            }
            b' ' | b'#' | b',' => {
                return Err(format!(
                    "character '{}' at byte {i} is not allowed in an OSC address",
                    bytes[i] as char
                ));
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn find(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

/// True when the (validated) `pattern` matches the whole `address`.
pub fn matches(pattern: &str, address: &str) -> bool {
    let (p, a) = (pattern.as_bytes(), address.as_bytes());
    let mut failed = vec![false; (p.len() + 1) * (a.len() + 1)];
    Matcher {
        p,
        a,
        failed: &mut failed,
    }
    .at(0, 0)
}

struct Matcher<'a> {
    p: &'a [u8],
    a: &'a [u8],
    /// `failed[pi * (a.len() + 1) + ai]`: matching from (pi, ai) is known to fail.
    failed: &'a mut [bool],
}

impl Matcher<'_> {
    fn at(&mut self, pi: usize, ai: usize) -> bool {
        let key = pi * (self.a.len() + 1) + ai;
        if self.failed[key] {
            return false;
        }
        let ok = self.step(pi, ai);
        if !ok {
            self.failed[key] = true;
        }
        ok
    }

    fn step(&mut self, pi: usize, ai: usize) -> bool {
        let (p, a) = (self.p, self.a);
        if pi == p.len() {
            return ai == a.len();
        }
        match p[pi] {
            b'*' => {
                // Zero or more characters up to the next '/'.
                let mut end = ai;
                loop {
                    if self.at(pi + 1, end) {
                        return true;
                    }
                    if end == a.len() || a[end] == b'/' {
                        return false;
                    }
                    end += 1;
                }
            }
            b'?' => ai < a.len() && a[ai] != b'/' && self.at(pi + 1, ai + 1),
            b'[' => {
                let Some(close) = find(p, pi + 1, b']') else {
                    return false;
                };
                ai < a.len()
                    && a[ai] != b'/'
                    && set_contains(&p[pi + 1..close], a[ai])
                    && self.at(close + 1, ai + 1)
            }
            b'{' => {
                let Some(close) = find(p, pi + 1, b'}') else {
                    return false;
                };
                let alternatives: Vec<&[u8]> = p[pi + 1..close].split(|&b| b == b',').collect();
                alternatives
                    .into_iter()
                    .any(|alt| a[ai..].starts_with(alt) && self.at(close + 1, ai + alt.len()))
            }
            literal => ai < a.len() && a[ai] == literal && self.at(pi + 1, ai + 1),
        }
    }
}

/// `[...]` body: optional leading `!`, characters and `x-y` ranges; a `-` first or last is
/// literal.
fn set_contains(body: &[u8], c: u8) -> bool {
    let (negate, body) = match body.strip_prefix(b"!") {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == b'-' {
            let (lo, hi) = (body[i].min(body[i + 2]), body[i].max(body[i + 2]));
            found |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    found != negate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_stay_within_one_part() {
        assert!(matches("/knob/ch_g*", "/knob/ch_g0"));
        assert!(matches("/knob/*", "/knob/denoise"));
        assert!(!matches("/*", "/knob/denoise"));
        assert!(matches("/*/*", "/knob/denoise"));
        assert!(matches("/knob/ch_g?", "/knob/ch_g7"));
        assert!(!matches("/knob/ch_g?", "/knob/ch_g"));
        assert!(matches("/knob/*_g*", "/knob/ch_g3"));
        assert!(!matches("/knob/*x", "/knob/denoise"));
    }

    #[test]
    fn sets_ranges_negation_and_alternatives() {
        assert!(matches("/knob/ch_g[0-3]", "/knob/ch_g2"));
        assert!(!matches("/knob/ch_g[0-3]", "/knob/ch_g4"));
        assert!(matches("/knob/ch_g[!0-3]", "/knob/ch_g4"));
        assert!(matches("/knob/ch_g[15]", "/knob/ch_g5"));
        assert!(matches("/knob/ch_g[a-]", "/knob/ch_g-"));
        assert!(matches("/knob/{denoise,seed}", "/knob/seed"));
        assert!(!matches("/knob/{denoise,seed}", "/knob/steps"));
        assert!(matches("/{timbre,structure}/clear", "/structure/clear"));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(
            validate("/knob/ch_g[0-3")
                .unwrap_err()
                .contains("unclosed '['")
        );
        assert!(validate("/knob/{a,b").unwrap_err().contains("unclosed '{'"));
        assert!(validate("knob").unwrap_err().contains("start with '/'"));
        assert!(validate("/knob/a]").unwrap_err().contains("unmatched ']'"));
        assert!(validate("/knob/[]").unwrap_err().contains("empty '[]'"));
        assert!(validate("/knob/{a,*}").is_err());
        assert!(validate("/knob/ch_g{1,2}").is_ok());
    }

    #[test]
    fn hostile_pattern_terminates_quickly() {
        let pattern = format!("/{}b", "*a".repeat(200));
        let address = format!("/{}", "a".repeat(60));
        let start = std::time::Instant::now();
        assert!(!matches(&pattern, &address));
        assert!(start.elapsed() < std::time::Duration::from_millis(200));
    }
}
