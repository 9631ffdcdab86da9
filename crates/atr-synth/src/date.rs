//! Calendar dates as days since 1970-01-01 (proleptic Gregorian), with just the arithmetic the
//! generator needs.

/// A calendar date, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub i32);

impl Date {
    /// The date `y-m-d` (`m` in 1..=12, `d` in 1..=31).
    pub fn ymd(y: i32, m: u32, d: u32) -> Date {
        // Howard Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = (y - era * 400) as u32;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Date(era * 146_097 + doe as i32 - 719_468)
    }

    /// `(year, month, day)`.
    pub fn civil(self) -> (i32, u32, u32) {
        // Howard Hinnant's civil_from_days.
        let z = self.0 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = (z - era * 146_097) as u32;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe as i32 + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    pub fn year(self) -> i32 {
        self.civil().0
    }

    pub fn add_days(self, days: i32) -> Date {
        Date(self.0 + days)
    }

    /// The same day `years` later (29 February becomes 1 March in a common year).
    pub fn add_years(self, years: i32) -> Date {
        let (y, m, d) = self.civil();
        if m == 2 && d == 29 && !is_leap(y + years) {
            Date::ymd(y + years, 3, 1)
        } else {
            Date::ymd(y + years, m, d)
        }
    }

    /// The first day of the month after this date's month.
    pub fn next_month_start(self) -> Date {
        let (y, m, _) = self.civil();
        if m == 12 {
            Date::ymd(y + 1, 1, 1)
        } else {
            Date::ymd(y, m + 1, 1)
        }
    }

    /// The first day of this date's month.
    pub fn month_start(self) -> Date {
        let (y, m, _) = self.civil();
        Date::ymd(y, m, 1)
    }

    /// The last day of this date's month.
    pub fn month_end(self) -> Date {
        self.next_month_start().add_days(-1)
    }

    /// `YYYY-MM-DD` as ASCII bytes.
    pub fn bytes(self) -> [u8; 10] {
        let (y, m, d) = self.civil();
        let y = y.clamp(0, 9999) as u32;
        let digit = |v: u32| b'0' + (v % 10) as u8;
        [
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            b'-',
            digit(m / 10),
            digit(m),
            b'-',
            digit(d / 10),
            digit(d),
        ]
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.bytes();
        // The bytes are ASCII digits and dashes.
        f.write_str(std::str::from_utf8(&b).unwrap_or("0000-00-00"))
    }
}

pub fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_formats() {
        assert_eq!(Date::ymd(1970, 1, 1), Date(0));
        assert_eq!(Date::ymd(2000, 3, 1).to_string(), "2000-03-01");
        for days in (-40_000..40_000).step_by(97) {
            let d = Date(days);
            let (y, m, dd) = d.civil();
            assert_eq!(Date::ymd(y, m, dd), d);
        }
        assert_eq!(
            Date::ymd(2024, 2, 29).add_years(1).to_string(),
            "2025-03-01"
        );
        assert_eq!(
            Date::ymd(2025, 12, 15).next_month_start().to_string(),
            "2026-01-01"
        );
        assert_eq!(Date::ymd(2024, 2, 10).month_end().to_string(), "2024-02-29");
        assert_eq!(
            Date::ymd(2025, 7, 1).add_years(1).add_days(-1).to_string(),
            "2026-06-30"
        );
    }
}
