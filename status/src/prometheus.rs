//! Reads the Prometheus text format back into samples: the exporter keeps no other view of
//! the metrics, and its rendering is what an operator's Prometheus scrapes, so the page and
//! the alerts see the same numbers.

use std::collections::BTreeMap;

/// One line of the text format: `name{label="value",…} value`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of `text`. Comments, blank lines and lines that do not parse are skipped: a
/// line this reader does not understand must not hide the others.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    // A timestamp may follow the value.
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// `a="x",b="y"}` → the labels and what follows the closing brace.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_string();
        let (value, after) = parse_quoted(text[eq + 1..].trim_start())?;
        labels.insert(key, value);
        text = after;
    }
}

/// `"v\"x" …` → `v"x` and what follows the closing quote.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_values_and_skips_what_it_cannot_read() {
        let text = "# TYPE x counter\n\
                    x_total{node=\"a\",path=\"q\\\"uo\\\\te\"} 12\n\
                    plain 1.5 1700000000\n\
                    bucket{le=\"+Inf\"} +Inf\n\
                    broken{node=\"a 3\n\
                    {} 4\n\
                    nan_value x\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].label("node"), Some("a"));
        assert_eq!(samples[0].label("path"), Some("q\"uo\\te"));
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].value, 1.5);
        assert!(samples[2].value.is_infinite());
    }
}
