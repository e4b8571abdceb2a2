//! Money is an `i64` count of nano-USD (10⁻⁹ USD): small enough that every
//! per-token price with up to three decimals per million tokens is exact, and
//! large enough for balances up to about 9.2 billion USD. Never floats.

/// Nano-USD in one USD.
pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Converts a configured USD amount (e.g. a price per million tokens) to
/// nano-USD, rounding to the nearest nano. Config files carry decimals; this
/// is the one place a float becomes money.
pub fn usd_to_nanos(usd: f64) -> i64 {
    (usd * NANOS_PER_USD as f64).round() as i64
}

/// Parses a decimal USD string such as `"12.50"` or `"-3"` exactly.
pub fn parse_usd(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 9
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<9}").parse().ok()?;
    let nanos = whole.checked_mul(NANOS_PER_USD)?.checked_add(fraction)?;
    Some(if negative { -nanos } else { nanos })
}

/// Formats nano-USD as a decimal USD string with up to nine decimals,
/// keeping at least two: `1500000000` → `"1.50"`, `180` → `"0.00000018"`.
pub fn format_usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let whole = abs / NANOS_PER_USD as u64;
    let fraction = format!("{:09}", abs % NANOS_PER_USD as u64);
    let trimmed = fraction.trim_end_matches('0');
    let decimals = if trimmed.len() < 2 {
        &fraction[..2]
    } else {
        trimmed
    };
    format!("{sign}{whole}.{decimals}")
}

/// A processing fee of `fee_bp` basis points on `cents`, rounded half up
/// to the cent: what Stripe payments add to the credit bought.
pub fn fee_cents(cents: i64, fee_bp: i64) -> i64 {
    (cents * fee_bp + 5_000) / 10_000
}

/// Cents as `12.50`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Nano-USD as a JSON number of USD (for `usage.cost`, OpenRouter's convention).
pub fn nanos_to_usd_f64(nanos: i64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_configured_prices_exactly() {
        assert_eq!(usd_to_nanos(0.15), 150_000_000);
        assert_eq!(usd_to_nanos(0.6), 600_000_000);
        assert_eq!(usd_to_nanos(2.5), 2_500_000_000);
        assert_eq!(usd_to_nanos(0.000_000_001), 1);
        assert_eq!(usd_to_nanos(0.0), 0);
    }

    #[test]
    fn parses_decimal_strings() {
        assert_eq!(parse_usd("12.50"), Some(12_500_000_000));
        assert_eq!(parse_usd("-3"), Some(-3_000_000_000));
        assert_eq!(parse_usd(".5"), Some(500_000_000));
        assert_eq!(parse_usd("0.000000001"), Some(1));
        for bad in [
            "",
            "-",
            "1.2.3",
            "abc",
            "1e3",
            "0.0000000001",
            "99999999999999999999",
        ] {
            assert_eq!(parse_usd(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_with_at_least_cents() {
        assert_eq!(format_usd(1_500_000_000), "1.50");
        assert_eq!(format_usd(180), "0.00000018");
        assert_eq!(format_usd(0), "0.00");
        assert_eq!(format_usd(-2_000_000_000), "-2.00");
        assert_eq!(format_usd(123_456_789), "0.123456789");
    }
}
