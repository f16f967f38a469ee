//! Calendar periods in UTC: the month a budget covers, the day a usage
//! group is. Plain arithmetic on unix seconds (days-from-civil), no
//! time-zone database.

const DAY: i64 = 86_400;

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number since 1970-01-01 of a date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A calendar month: `[start, end)` in unix seconds and its `YYYY-MM` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Month {
    pub start: i64,
    pub end: i64,
    pub label: String,
}

pub fn month_of(unix: i64) -> Month {
    let (y, m, _) = civil_from_days(unix.div_euclid(DAY));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Month {
        start: days_from_civil(y, m, 1) * DAY,
        end: days_from_civil(ny, nm, 1) * DAY,
        label: format!("{y:04}-{m:02}"),
    }
}

/// `YYYY-MM-DD` of a day number.
pub fn day_label(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days() {
        assert_eq!(day_label(0), "1970-01-01");
        // 2024-02-29T12:00:00Z
        let m = month_of(1_709_208_000);
        assert_eq!(m.label, "2024-02");
        assert_eq!(m.start, 1_706_745_600);
        assert_eq!(m.end, 1_709_251_200);
        assert_eq!(month_of(1_735_603_200).label, "2024-12");
        assert_eq!(month_of(1_735_603_200).end, 1_735_689_600);
        for days in [-1000, 0, 19_000, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
