//! French quiet hours for commercial SMS.
//!
//! The iSendPro spec forbids commercial traffic outside business hours, and
//! reports it with code 24: "Pas d'envoi commercial entre 20h et 08h, ni les
//! dimanches et jours fériés". French operators apply the same rule. So a
//! commercial SMS may only leave between 08:00 and 20:00 Europe/Paris local
//! time, on a day that is neither a Sunday nor a French public holiday.
//!
//! Everything here is computed in Paris civil time through the bundled tzdb
//! (`jiff`'s `tzdb-bundle-always`), so the daemon behaves the same on a host
//! without `/usr/share/zoneinfo` and across DST changes.

use std::sync::LazyLock;

use jiff::civil::{Date, Weekday};
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, ToSpan};

/// The hour (Paris time) from which sending is allowed.
const OPEN_HOUR: i8 = 8;
/// The hour (Paris time) from which sending is forbidden again.
const CLOSE_HOUR: i8 = 20;

/// Europe/Paris, looked up once.
///
/// The tzdb is compiled into the binary, so the lookup cannot realistically
/// fail; should it ever, the current Paris rules as a POSIX TZ string give the
/// same answers for every date since 1996, and a fixed UTC+1 is the last resort
/// so that no code path here can panic.
static PARIS: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get("Europe/Paris")
        .or_else(|_| TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3"))
        .unwrap_or_else(|_| TimeZone::fixed(Offset::constant(1)))
});

/// The Europe/Paris time zone (bundled tzdb), for other rules that count
/// in Paris time.
pub fn paris() -> &'static TimeZone {
    &PARIS
}

/// Easter Sunday of a Gregorian year.
///
/// Computed with the anonymous Gregorian algorithm (Meeus/Jones/Butcher),
/// using Euclidean division so that it stays correct for the proleptic
/// calendar's negative years. Years outside `jiff`'s range (-9999..=9999) are
/// clamped to it, so the result is always a Sunday between 22 March and
/// 25 April.
pub fn easter_sunday(year: i16) -> Date {
    let year = year.clamp(Date::MIN.year(), Date::MAX.year());
    let y = i32::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l) / 451;
    let n = h + l - 7 * m + 114;
    // h is in 0..=29, l in 0..=6 and m in 0..=1, so n is in 107..=149: the
    // month is 3 or 4 and the day in 1..=31, both fitting in an i8.
    let month = (n / 31) as i8;
    let day = (n % 31 + 1) as i8;
    // Cannot fail: the year was clamped into jiff's range, and the algorithm
    // only yields days between 22 March and 25 April (the test
    // `easter_is_a_spring_sunday_for_every_i16` checks every input).
    Date::new(year, month, day).expect("Easter is a valid date in a clamped year")
}

/// Whether a date is a French public holiday.
///
/// The holidays are 1 January, Easter Monday, 1 May, 8 May, Ascension
/// Thursday (Easter + 39 days), Whit Monday (Easter + 50 days), 14 July,
/// 15 August, 1 November, 11 November and 25 December. Easter Sunday and
/// Whit Sunday are not in the list (they are Sundays anyway), nor are Good
/// Friday and 26 December (Alsace-Moselle only).
pub fn is_french_holiday(date: Date) -> bool {
    let fixed = matches!(
        (date.month(), date.day()),
        (1, 1) | (5, 1) | (5, 8) | (7, 14) | (8, 15) | (11, 1) | (11, 11) | (12, 25)
    );
    if fixed {
        return true;
    }
    // Moveable feasts fall between 23 March and 14 June; no saturation can
    // happen that far from the ends of jiff's range.
    let easter = easter_sunday(date.year());
    [1, 39, 50]
        .into_iter()
        .any(|days: i64| easter.saturating_add(days.days()) == date)
}

/// Whether no commercial SMS may be sent on this whole Paris calendar day.
fn is_closed_day(date: Date) -> bool {
    date.weekday() == Weekday::Sunday || is_french_holiday(date)
}

/// Whether commercial SMS must not be sent at this instant.
///
/// True when, in Europe/Paris local time, it is before 08:00, from 20:00 on,
/// a Sunday, or a French public holiday (see [`is_french_holiday`]).
pub fn is_quiet(at: Timestamp) -> bool {
    let local = PARIS.to_datetime(at);
    let hour = local.hour();
    !(OPEN_HOUR..CLOSE_HOUR).contains(&hour) || is_closed_day(local.date())
}

/// The first instant at or after `at` when commercial sending is allowed.
///
/// That is `at` itself when it is not quiet (see [`is_quiet`]), otherwise
/// 08:00 Paris time of the next day that is neither a Sunday nor a holiday
/// (the same day when `at` is before 08:00 on an allowed day).
///
/// The target is computed as a civil date and time, then converted with the
/// Paris zone using the "compatible" disambiguation, so DST changes are
/// handled (08:00 always exists in Paris; transitions happen at 02:00/03:00).
///
/// Saturates to [`Timestamp::MAX`] when the allowed instant would lie beyond
/// `jiff`'s range (only possible in the last days of year 9999).
pub fn next_allowed(at: Timestamp) -> Timestamp {
    if !is_quiet(at) {
        return at;
    }
    let local = PARIS.to_datetime(at);
    let mut day = if local.hour() < OPEN_HOUR {
        local.date()
    } else {
        match local.date().tomorrow() {
            Ok(day) => day,
            Err(_) => return Timestamp::MAX,
        }
    };
    // Each step moves one day forward (erroring out at the end of the range),
    // and closed days come at most two in a row (a Sunday then a holiday
    // Monday), so this loops at most twice.
    while is_closed_day(day) {
        day = match day.tomorrow() {
            Ok(day) => day,
            Err(_) => return Timestamp::MAX,
        };
    }
    PARIS
        .to_ambiguous_timestamp(day.at(OPEN_HOUR, 0, 0, 0))
        .compatible()
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    /// A timestamp from an RFC 3339 string with an explicit offset.
    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid test timestamp")
    }

    #[test]
    fn easter_sunday_known_dates() {
        let known = [
            (2000, 4, 23),
            (2019, 4, 21),
            (2024, 3, 31),
            (2025, 4, 20),
            (2026, 4, 5),
            (2027, 3, 28),
            (2028, 4, 16),
            (2030, 4, 21),
            (2038, 4, 25),
            // Extremes of the Easter window.
            (1818, 3, 22),
            (2285, 3, 22),
            (1943, 4, 25),
            (1954, 4, 18),
            (1981, 4, 19),
        ];
        for (y, m, d) in known {
            assert_eq!(easter_sunday(y), date(y, m, d), "Easter {y}");
        }
    }

    #[test]
    fn easter_is_a_spring_sunday_for_every_i16() {
        for year in i16::MIN..=i16::MAX {
            let easter = easter_sunday(year);
            assert_eq!(easter.weekday(), Weekday::Sunday, "Easter {year}");
            let md = (easter.month(), easter.day());
            assert!(((3, 22)..=(4, 25)).contains(&md), "Easter {year}: {easter}");
            assert_eq!(
                easter.year(),
                year.clamp(-9999, 9999),
                "Easter {year} in its (clamped) year"
            );
        }
    }

    #[test]
    fn moveable_holidays() {
        // (Easter Monday, Ascension, Whit Monday)
        let known = [
            (date(2024, 4, 1), date(2024, 5, 9), date(2024, 5, 20)),
            (date(2025, 4, 21), date(2025, 5, 29), date(2025, 6, 9)),
            (date(2026, 4, 6), date(2026, 5, 14), date(2026, 5, 25)),
            (date(2027, 3, 29), date(2027, 5, 6), date(2027, 5, 17)),
            (date(2028, 4, 17), date(2028, 5, 25), date(2028, 6, 5)),
        ];
        for (monday, ascension, whit) in known {
            assert_eq!(monday.weekday(), Weekday::Monday);
            assert_eq!(ascension.weekday(), Weekday::Thursday);
            assert_eq!(whit.weekday(), Weekday::Monday);
            for d in [monday, ascension, whit] {
                assert!(is_french_holiday(d), "{d} is a holiday");
            }
            // Their neighbours are not (Easter Sunday, Good Friday, the days
            // around Ascension, Whit Sunday and Tuesday).
            for d in [
                monday.yesterday().unwrap(),
                monday.tomorrow().unwrap(),
                monday.saturating_sub(3.days()),
                ascension.yesterday().unwrap(),
                ascension.tomorrow().unwrap(),
                whit.yesterday().unwrap(),
                whit.tomorrow().unwrap(),
            ] {
                // In 2024 Ascension (9 May) follows 8 May, a fixed holiday.
                if (d.month(), d.day()) == (5, 8) {
                    continue;
                }
                assert!(!is_french_holiday(d), "{d} is not a holiday");
            }
        }
    }

    #[test]
    fn fixed_holidays_and_ordinary_days() {
        for (m, d) in [
            (1, 1),
            (5, 1),
            (5, 8),
            (7, 14),
            (8, 15),
            (11, 1),
            (11, 11),
            (12, 25),
        ] {
            for y in [1999, 2024, 2026, 2031] {
                assert!(is_french_holiday(date(y, m, d)), "{y}-{m}-{d}");
            }
        }
        for (m, d) in [
            (1, 2),
            (5, 2),
            (5, 7),
            (5, 9),
            (7, 13),
            (7, 15),
            (8, 14),
            (8, 16),
            (10, 31),
            (11, 2),
            (11, 10),
            (12, 24),
            (12, 26),
            (12, 31),
        ] {
            assert!(!is_french_holiday(date(2026, m, d)), "2026-{m}-{d}");
        }
        // Good Friday 2026.
        assert!(!is_french_holiday(date(2026, 4, 3)));
    }

    /// Every holiday of a year, in order.
    fn holidays_of(year: i16) -> Vec<Date> {
        let mut day = date(year, 1, 1);
        let mut out = Vec::new();
        while day.year() == year {
            if is_french_holiday(day) {
                out.push(day);
            }
            day = day.tomorrow().unwrap();
        }
        out
    }

    #[test]
    fn exact_holiday_list_of_2026() {
        let expected = vec![
            date(2026, 1, 1),
            date(2026, 4, 6),
            date(2026, 5, 1),
            date(2026, 5, 8),
            date(2026, 5, 14),
            date(2026, 5, 25),
            date(2026, 7, 14),
            date(2026, 8, 15),
            date(2026, 11, 1),
            date(2026, 11, 11),
            date(2026, 12, 25),
        ];
        assert_eq!(holidays_of(2026), expected);
        // In 2008 Easter was 23 March, so Ascension fell on 1 May.
        assert_eq!(easter_sunday(2008), date(2008, 3, 23));
        assert_eq!(holidays_of(2008).len(), 10);
        assert!(is_french_holiday(date(2008, 5, 1)));
    }

    #[test]
    fn quiet_hours_in_winter() {
        // Wednesday 14 January 2026, Paris is UTC+1.
        assert_eq!(date(2026, 1, 14).weekday(), Weekday::Wednesday);
        assert!(is_quiet(ts("2026-01-14T06:59:00Z"))); // 07:59
        assert!(is_quiet(ts("2026-01-14T06:59:59.999999999Z")));
        assert!(!is_quiet(ts("2026-01-14T07:00:00Z"))); // 08:00
        assert!(!is_quiet(ts("2026-01-14T18:59:00Z"))); // 19:59
        assert!(is_quiet(ts("2026-01-14T19:00:00Z"))); // 20:00
        assert!(is_quiet(ts("2026-01-14T22:59:00Z"))); // 23:59
        // 23:30 UTC is already Thursday 00:30 in Paris.
        assert!(is_quiet(ts("2026-01-14T23:30:00Z")));
        // Offsets in the input are honoured.
        assert!(!is_quiet(ts("2026-01-14T08:00:00+01:00")));
        assert!(is_quiet(ts("2026-01-14T07:59:00+01:00")));
    }

    #[test]
    fn quiet_hours_in_summer() {
        // Wednesday 15 July 2026, Paris is UTC+2.
        assert_eq!(date(2026, 7, 15).weekday(), Weekday::Wednesday);
        assert!(is_quiet(ts("2026-07-15T05:59:00Z"))); // 07:59
        assert!(!is_quiet(ts("2026-07-15T06:00:00Z"))); // 08:00
        assert!(!is_quiet(ts("2026-07-15T17:59:00Z"))); // 19:59
        assert!(is_quiet(ts("2026-07-15T18:00:00Z"))); // 20:00
        // 18:30 UTC: allowed under a winter offset, quiet in summer.
        assert!(is_quiet(ts("2026-07-15T18:30:00Z")));
        assert!(!is_quiet(ts("2026-01-14T18:30:00Z")));
    }

    #[test]
    fn sundays_saturdays_and_holidays() {
        // Saturday 17 January 2026 midday: allowed.
        assert!(!is_quiet(ts("2026-01-17T11:00:00Z")));
        // Sunday 18 January 2026 midday: quiet.
        assert!(is_quiet(ts("2026-01-18T11:00:00Z")));
        // Tuesday 14 July 2026 midday: quiet (holiday).
        assert_eq!(date(2026, 7, 14).weekday(), Weekday::Tuesday);
        assert!(is_quiet(ts("2026-07-14T10:00:00Z")));
        // Monday 13 July 2026 midday: allowed.
        assert!(!is_quiet(ts("2026-07-13T10:00:00Z")));
    }

    #[test]
    fn spring_forward_sunday() {
        // Sunday 29 March 2026: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        assert_eq!(date(2026, 3, 29).weekday(), Weekday::Sunday);
        let monday_8 = ts("2026-03-30T06:00:00Z"); // 08:00 CEST
        let mut t = ts("2026-03-28T23:00:00Z"); // Sunday 00:00 CET
        let end = ts("2026-03-29T22:00:00Z"); // Monday 00:00 CEST
        while t < end {
            assert!(is_quiet(t), "{t}");
            assert_eq!(next_allowed(t), monday_8, "from {t}");
            t = t.saturating_add(10.minutes()).unwrap();
        }
        // Monday, just before and at 08:00 CEST.
        assert!(is_quiet(ts("2026-03-30T05:59:00Z")));
        assert_eq!(next_allowed(ts("2026-03-30T05:59:00Z")), monday_8);
        assert!(!is_quiet(monday_8));
        // Saturday evening before: 19:59 CET allowed, 20:00 CET quiet and
        // the next slot is Monday 08:00 CEST, an hour "earlier" in UTC.
        assert!(!is_quiet(ts("2026-03-28T18:59:00Z")));
        assert!(is_quiet(ts("2026-03-28T19:00:00Z")));
        assert_eq!(next_allowed(ts("2026-03-28T19:00:00Z")), monday_8);
    }

    #[test]
    fn fall_back_sunday() {
        // Sunday 25 October 2026: 03:00 CEST falls back to 02:00 CET.
        assert_eq!(date(2026, 10, 25).weekday(), Weekday::Sunday);
        let monday_8 = ts("2026-10-26T07:00:00Z"); // 08:00 CET
        let mut t = ts("2026-10-24T22:00:00Z"); // Sunday 00:00 CEST
        let end = ts("2026-10-25T23:00:00Z"); // Monday 00:00 CET
        while t < end {
            assert!(is_quiet(t), "{t}");
            assert_eq!(next_allowed(t), monday_8, "from {t}");
            t = t.saturating_add(10.minutes()).unwrap();
        }
        assert!(is_quiet(ts("2026-10-26T06:59:00Z")));
        assert!(!is_quiet(monday_8));
        // Saturday 24 October: 19:59 CEST allowed, 20:00 CEST quiet.
        assert!(!is_quiet(ts("2026-10-24T17:59:00Z")));
        assert!(is_quiet(ts("2026-10-24T18:00:00Z")));
        assert_eq!(next_allowed(ts("2026-10-24T18:00:00Z")), monday_8);
    }

    #[test]
    fn next_allowed_cases() {
        // Friday 16 January 2026 20:30 CET -> Saturday 08:00 CET.
        assert_eq!(date(2026, 1, 16).weekday(), Weekday::Friday);
        assert_eq!(
            next_allowed(ts("2026-01-16T19:30:00Z")),
            ts("2026-01-17T07:00:00Z")
        );
        // Saturday 17 January 20:00 CET -> Monday 08:00 CET.
        assert_eq!(
            next_allowed(ts("2026-01-17T19:00:00Z")),
            ts("2026-01-19T07:00:00Z")
        );
        // Saturday 4 April 2026 21:00 CEST -> Tuesday 7 April 08:00 CEST
        // (Sunday is Easter, Monday is Easter Monday).
        assert_eq!(
            next_allowed(ts("2026-04-04T19:00:00Z")),
            ts("2026-04-07T06:00:00Z")
        );
        // Tuesday 14 July 2026 (holiday), midday -> Wednesday 08:00 CEST.
        assert_eq!(
            next_allowed(ts("2026-07-14T10:00:00Z")),
            ts("2026-07-15T06:00:00Z")
        );
        // Thursday 24 December 21:00 CET -> Saturday 26 December 08:00 CET.
        assert_eq!(date(2026, 12, 26).weekday(), Weekday::Saturday);
        assert_eq!(
            next_allowed(ts("2026-12-24T20:00:00Z")),
            ts("2026-12-26T07:00:00Z")
        );
        // Early on an allowed day -> 08:00 the same day.
        assert_eq!(
            next_allowed(ts("2026-01-14T05:00:00Z")),
            ts("2026-01-14T07:00:00Z")
        );
        // Just after midnight UTC but already 01:30 Paris on Wednesday.
        assert_eq!(
            next_allowed(ts("2026-01-14T00:30:00Z")),
            ts("2026-01-14T07:00:00Z")
        );
        // An allowed instant is returned unchanged, nanoseconds included.
        let ok = ts("2026-01-14T12:34:56.789123456Z");
        assert_eq!(next_allowed(ok), ok);
        let ok = ts("2026-01-14T07:00:00Z");
        assert_eq!(next_allowed(ok), ok);
    }

    #[test]
    fn next_allowed_is_the_first_allowed_instant() {
        // Every 7 minutes over 2026 (and a bit): the result is never before
        // the input, is allowed, and when it moved it is 08:00 Paris with
        // the instant just before it quiet.
        let mut t = ts("2025-12-31T00:00:00Z");
        let end = ts("2027-01-02T00:00:00Z");
        while t < end {
            let next = next_allowed(t);
            assert!(next >= t, "{t} -> {next}");
            assert!(!is_quiet(next), "{t} -> {next}");
            assert_eq!(is_quiet(t), next != t, "{t} -> {next}");
            if next != t {
                let local = PARIS.to_datetime(next);
                assert_eq!(local.time(), jiff::civil::time(8, 0, 0, 0), "{t}");
                assert!(is_quiet(next.saturating_sub(1.nanosecond()).unwrap()));
                // No allowed day was skipped: every day in between is
                // closed, or it is the day of `t` after 20:00.
                let mut day = PARIS.to_datetime(t).date();
                if PARIS.to_datetime(t).hour() >= CLOSE_HOUR {
                    day = day.tomorrow().unwrap();
                }
                while day < local.date() {
                    assert!(is_closed_day(day), "{t} skipped {day}");
                    day = day.tomorrow().unwrap();
                }
            }
            t = t.saturating_add(7.minutes()).unwrap();
        }
    }

    #[test]
    fn no_panic_at_the_ends_of_the_range() {
        for t in [
            Timestamp::MIN,
            Timestamp::MAX,
            ts("9999-12-29T12:00:00Z"),
            ts("9999-12-30T19:00:00Z"),
            ts("-009999-01-03T12:00:00Z"),
        ] {
            let next = next_allowed(t);
            assert!(next >= t, "{t} -> {next}");
        }
        assert_eq!(next_allowed(Timestamp::MAX), Timestamp::MAX);
        // Near the end, 08:00 Paris on 31 Dec 9999 is past Timestamp::MAX.
        assert_eq!(next_allowed(ts("9999-12-30T21:00:00Z")), Timestamp::MAX);
        assert!(is_quiet(Timestamp::MAX));
        for d in [Date::MIN, Date::MAX] {
            let _ = is_french_holiday(d);
        }
        assert_eq!(easter_sunday(i16::MAX), easter_sunday(9999));
        assert_eq!(easter_sunday(i16::MIN), easter_sunday(-9999));
    }

    #[test]
    fn paris_zone_is_the_real_tzdb() {
        // The bundled tzdb is found (not one of the fallbacks), even on a
        // host without /usr/share/zoneinfo.
        assert_eq!(PARIS.iana_name(), Some("Europe/Paris"));
    }
}
