//! Formatting helpers shared by server rendering and the WASM client.

/// Formats Unix epoch milliseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Formats nano-USD as dollars with the sign in front: `$1.50`, `-$0.40`.
pub fn dollars(nanos: i64) -> String {
    let amount = crate::billing::money::format_usd(nanos.abs());
    if nanos < 0 {
        format!("-${amount}")
    } else {
        format!("${amount}")
    }
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(datetime(0), "1970-01-01 00:00 UTC");
        assert_eq!(datetime(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(datetime(1_795_444_140_000), "2026-11-23 14:29 UTC");
        assert_eq!(datetime(-1), "1969-12-31 23:59 UTC");
    }

    #[test]
    fn dollars_put_the_sign_first() {
        assert_eq!(dollars(1_500_000_000), "$1.50");
        assert_eq!(dollars(-400_000_000), "-$0.40");
        assert_eq!(dollars(0), "$0.00");
    }
}
