//! Instants as the stores keep them (microseconds since the Unix epoch, UTC) and as FHIR and HTTP
//! write them; FHIR date/dateTime/instant parsing into the range of instants it covers, as date
//! search needs.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000) as i64
}

fn to_datetime(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A FHIR `instant` with microsecond precision, e.g. `2026-11-22T03:04:05.123456Z`.
pub fn fhir_instant(micros: i64) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    to_datetime(micros).format(&fmt).unwrap_or_default()
}

/// The FHIR `date` (`YYYY-MM-DD`) of an instant, in UTC.
pub fn fhir_date(micros: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]");
    to_datetime(micros).format(&fmt).unwrap_or_default()
}

/// The days `[start, end)` a FHIR `date` covers (`1970` the whole year), as `YYYY-MM-DD`: what
/// a date search parameter compares stored days with.
pub fn date_days(s: &str) -> Result<(String, String), BadDate> {
    if !matches!(s.len(), 4 | 7 | 10) {
        return Err(BadDate(s.to_string()));
    }
    let range = parse_fhir_range(s)?;
    Ok((fhir_date(range.start), fhir_date(range.end)))
}

/// The day a stored FHIR `date` is indexed by: its first day (`1970-05` → `1970-05-01`).
pub fn date_index_day(s: &str) -> Option<String> {
    date_days(s).ok().map(|(start, _)| start)
}

/// An HTTP-date (RFC 9110 IMF-fixdate) for `Last-Modified` and `Expires`.
pub fn http_date(micros: i64) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    to_datetime(micros).format(&fmt).unwrap_or_default()
}

/// The half-open range `[start, end)` of instants (microseconds) a FHIR date, dateTime or instant
/// covers: `2026` covers the whole year, `2026-03-01T10:00:00Z` one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstantRange {
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a FHIR date, dateTime or instant (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm))"
)]
pub struct BadDate(pub String);

fn micros_of(dt: OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1_000) as i64
}

/// Parses a FHIR date, dateTime or instant into the range of instants it covers. Dates without a
/// time zone are taken as UTC.
pub fn parse_fhir_range(s: &str) -> Result<InstantRange, BadDate> {
    let bad = || BadDate(s.to_string());
    let num = |r: std::ops::Range<usize>| -> Result<u32, BadDate> {
        let part = s.get(r).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let year = num(0..4)? as i32;
    let utc_midnight = |d: Date| micros_of(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    match s.len() {
        4 => {
            let start = Date::from_calendar_date(year, Month::January, 1).map_err(|_| bad())?;
            let end = Date::from_calendar_date(year + 1, Month::January, 1).map_err(|_| bad())?;
            Ok(InstantRange {
                start: utc_midnight(start),
                end: utc_midnight(end),
            })
        }
        7 if &s[4..5] == "-" => {
            let month = Month::try_from(num(5..7)? as u8).map_err(|_| bad())?;
            let start = Date::from_calendar_date(year, month, 1).map_err(|_| bad())?;
            let (ny, nm) = if month == Month::December {
                (year + 1, Month::January)
            } else {
                (year, month.next())
            };
            let end = Date::from_calendar_date(ny, nm, 1).map_err(|_| bad())?;
            Ok(InstantRange {
                start: utc_midnight(start),
                end: utc_midnight(end),
            })
        }
        10 if &s[4..5] == "-" && &s[7..8] == "-" => {
            let month = Month::try_from(num(5..7)? as u8).map_err(|_| bad())?;
            let date =
                Date::from_calendar_date(year, month, num(8..10)? as u8).map_err(|_| bad())?;
            let start = utc_midnight(date);
            Ok(InstantRange {
                start,
                end: start + 86_400_000_000,
            })
        }
        _ => {
            // A dateTime with seconds must carry a zone; tolerate a missing zone as UTC.
            let dt = OffsetDateTime::parse(s, &Rfc3339).or_else(|_| {
                let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
                PrimitiveDateTime::parse(s, &fmt).map(|p| p.assume_offset(UtcOffset::UTC))
            });
            let dt = dt.map_err(|_| bad())?;
            let start = micros_of(dt);
            // Precision is to the second unless fractional digits were given.
            let end = if s.contains('.') {
                start + 1
            } else {
                start + 1_000_000
            };
            Ok(InstantRange { start, end })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_cover_their_days_before_and_after_the_epoch() {
        assert_eq!(
            date_days("1958").unwrap(),
            ("1958-01-01".to_string(), "1959-01-01".to_string())
        );
        assert_eq!(
            date_days("1999-12").unwrap(),
            ("1999-12-01".to_string(), "2000-01-01".to_string())
        );
        assert_eq!(
            date_days("1944-02-29").unwrap(),
            ("1944-02-29".to_string(), "1944-03-01".to_string())
        );
        assert!(date_days("1970-01-01T00:00:00Z").is_err());
        assert!(date_days("19x0").is_err());
        assert_eq!(date_index_day("1970-05").as_deref(), Some("1970-05-01"));
    }

    #[test]
    fn instants_round_trip_through_ranges() {
        let t = 1_795_000_000_123_456;
        let r = parse_fhir_range(&fhir_instant(t)).unwrap();
        assert_eq!(
            r,
            InstantRange {
                start: t,
                end: t + 1
            }
        );
    }

    #[test]
    fn partial_dates_cover_their_period() {
        let y = parse_fhir_range("2026").unwrap();
        let m = parse_fhir_range("2026-12").unwrap();
        let d = parse_fhir_range("2026-12-31").unwrap();
        assert_eq!(y.end, m.end);
        assert_eq!(m.end, d.end);
        assert!(parse_fhir_range("2026-13").is_err());
        assert!(parse_fhir_range("20x6").is_err());
        assert!(parse_fhir_range("2026-02-30").is_err());
    }

    #[test]
    fn zones_are_honoured() {
        let a = parse_fhir_range("2026-01-01T05:00:00+05:00").unwrap();
        let b = parse_fhir_range("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
