//! SQL time literals: `TIMESTAMP` text ⇄ epoch milliseconds (UTC), and `INTERVAL` lengths.

use crate::error::{Location, SqlError};
use sqlparser::ast::{DateTimeField, Expr, Interval, Value as SqlValue};

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.fff][Z]` (UTC) into epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = t.split_once([' ', 'T']).unwrap_or((t, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next().unwrap_or(Some(0))?);
    let in_range = (-9999..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=31).contains(&da)
        && (0..=23).contains(&hh)
        && (0..=59).contains(&mm)
        && (0..=60).contains(&ss);
    if !in_range {
        return None;
    }
    let ms = match frac.len() {
        0 => 0,
        n if n <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            digits.parse::<i64>().ok()?
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, da);
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// Formats epoch milliseconds as `YYYY-MM-DD HH:MM:SS.fff` (UTC).
pub fn format_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:03}")
}

/// The length in milliseconds of `INTERVAL 'n' UNIT` (SECOND, MINUTE, HOUR, DAY, or
/// MILLISECOND-free forms like `INTERVAL '0.5' SECOND`).
pub fn interval_ms(expr: &Expr, at: Location) -> Result<i64, SqlError> {
    let Expr::Interval(Interval {
        value,
        leading_field,
        ..
    }) = expr
    else {
        return Err(SqlError::invalid(
            format!("expected an INTERVAL, found `{expr}`"),
            at,
        ));
    };
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            SqlValue::SingleQuotedString(s) => s.clone(),
            SqlValue::Number(n, _) => n.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let (amount, unit) = match leading_field {
        Some(f) => (text.trim().to_string(), f.clone()),
        None => {
            let mut parts = text.split_whitespace();
            let n = parts.next().unwrap_or("").to_string();
            let unit = match parts.next().map(str::to_ascii_uppercase).as_deref() {
                Some("SECOND" | "SECONDS") => DateTimeField::Second,
                Some("MINUTE" | "MINUTES") => DateTimeField::Minute,
                Some("HOUR" | "HOURS") => DateTimeField::Hour,
                Some("DAY" | "DAYS") => DateTimeField::Day,
                _ => DateTimeField::Second,
            };
            (n, unit)
        }
    };
    let unit_ms: f64 = match unit {
        DateTimeField::Second | DateTimeField::Seconds => 1e3,
        DateTimeField::Minute | DateTimeField::Minutes => 60e3,
        DateTimeField::Hour | DateTimeField::Hours => 3_600e3,
        DateTimeField::Day | DateTimeField::Days => 86_400e3,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1.0,
        other => return Err(SqlError::unsupported(format!("INTERVAL unit {other}"), at)),
    };
    match amount.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * unit_ms < 1e15 => {
            Ok((n * unit_ms).round() as i64)
        }
        _ => Err(SqlError::invalid(
            format!("`{expr}` is not a non-negative interval"),
            at,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text() {
        for ms in [0, 1_700_000_000_123, -1, 951_782_400_000] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms), "{ms}");
        }
        assert_eq!(parse_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_timestamp("2024-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp("garbage"), None);
        assert_eq!(parse_timestamp("99999999999999999-01-01 00:00:00"), None);
        assert_eq!(parse_timestamp("2024-01-01 -1:00:00"), None);
    }
}
