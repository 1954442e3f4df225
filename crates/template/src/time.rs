//! The clock behind `strftime_now`: a civil (proleptic Gregorian) date-time and a
//! C-locale `strftime` covering the directives Python's `datetime.strftime` passes to libc.

use std::fmt::Write;

/// A calendar date and time of day, without a time zone (like Python's naive `datetime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl CivilTime {
    /// The current UTC time.
    pub fn now_utc() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Self::from_unix(secs)
    }

    /// UTC civil time of a Unix timestamp (seconds).
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        CivilTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Days since 1970-01-01.
    fn days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// 0 = Sunday .. 6 = Saturday (1970-01-01 was a Thursday).
    pub fn weekday(&self) -> u32 {
        (self.days() + 4).rem_euclid(7) as u32
    }

    /// 1-based day of the year.
    pub fn day_of_year(&self) -> u32 {
        (self.days() - days_from_civil(self.year, 1, 1) + 1) as u32
    }

    /// C-locale `strftime`. Supports `%a %A %b %h %B %c %C %d %D %e %F %H %I %j %m %M %n %p
    /// %r %R %S %t %T %u %w %x %X %y %Y %z %Z %%` and glibc's `%-d`-style flag that drops
    /// padding. `%z`/`%Z` are empty (a naive time has no zone, as in Python). Unknown
    /// directives are copied through unchanged, as glibc does.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let num = |out: &mut String, v: u32, width: usize, pad: char| {
                if no_pad {
                    let _ = write!(out, "{v}");
                } else if pad == ' ' {
                    let _ = write!(out, "{v:>width$}");
                } else {
                    let _ = write!(out, "{v:0width$}");
                }
            };
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let month_name = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
            let weekday_name = WEEKDAYS[self.weekday() as usize];
            match d {
                'a' => out.push_str(&weekday_name[..3]),
                'A' => out.push_str(weekday_name),
                'b' | 'h' => out.push_str(&month_name[..3]),
                'B' => out.push_str(month_name),
                'c' => out.push_str(&self.strftime("%a %b %e %H:%M:%S %Y")),
                'C' => num(&mut out, self.year.div_euclid(100) as u32, 2, '0'),
                'd' => num(&mut out, self.day, 2, '0'),
                'D' | 'x' => out.push_str(&self.strftime("%m/%d/%y")),
                'e' => num(&mut out, self.day, 2, ' '),
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'H' => num(&mut out, self.hour, 2, '0'),
                'I' => num(&mut out, hour12, 2, '0'),
                'j' => num(&mut out, self.day_of_year(), 3, '0'),
                'm' => num(&mut out, self.month, 2, '0'),
                'M' => num(&mut out, self.minute, 2, '0'),
                'n' => out.push('\n'),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'r' => out.push_str(&self.strftime("%I:%M:%S %p")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'S' => num(&mut out, self.second, 2, '0'),
                't' => out.push('\t'),
                'T' | 'X' => out.push_str(&self.strftime("%H:%M:%S")),
                'u' => num(
                    &mut out,
                    if self.weekday() == 0 {
                        7
                    } else {
                        self.weekday()
                    },
                    1,
                    '0',
                ),
                'w' => num(&mut out, self.weekday(), 1, '0'),
                'y' => num(&mut out, self.year.rem_euclid(100) as u32, 2, '0'),
                'Y' => {
                    let _ = write!(out, "{}", self.year);
                }
                'z' | 'Z' => {}
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }
}

// Howard Hinnant's days_from_civil / civil_from_days
// (https://howardhinnant.github.io/date_algorithms.html), proleptic Gregorian calendar.
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y as i64 - 1 } else { y as i64 };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((if m <= 2 { y + 1 } else { y }) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip_and_weekday() {
        // 1741964966 = 2025-03-14T15:09:26Z (Friday), per `date -u -d @1741964966`.
        let t = CivilTime::from_unix(1_741_964_966);
        assert_eq!(
            t,
            CivilTime {
                year: 2025,
                month: 3,
                day: 14,
                hour: 15,
                minute: 9,
                second: 26
            }
        );
        assert_eq!(t.weekday(), 5);
        assert_eq!(t.day_of_year(), 73);
        assert_eq!(
            CivilTime::from_unix(0),
            CivilTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0
            }
        );
    }
}
