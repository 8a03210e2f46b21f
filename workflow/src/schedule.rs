//! When a calendar workflow runs: `hourly`, `daily HH:MM`, `weekly DAY HH:MM`, `every N(m|h|d)`,
//! in UTC.

/// A calendar schedule, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every so many seconds from the epoch (`every 15m`, `every 6h`, `hourly`).
    Every(u64),
    /// At this minute of each day (`daily 03:30`).
    Daily(u32),
    /// At this minute of the week, Monday 00:00 being 0 (`weekly mon 03:30`).
    Weekly(u32),
}

impl Schedule {
    /// `hourly`, `daily HH:MM`, `weekly DAY HH:MM` (mon … sun), `every N{m,h,d}` (at least 5m).
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let minute_of_day = |hm: &str| -> Result<u32, String> {
            let (h, m) = hm.split_once(':').ok_or_else(|| format!("{hm:?}: expected HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 && m.to_string().len() <= 2 && h.to_string().len() <= 2 => {
                    Ok(h * 60 + m)
                }
                _ => Err(format!("{hm:?}: expected HH:MM (00:00 to 23:59)")),
            }
        };
        match words.as_slice() {
            ["hourly"] => Ok(Schedule::Every(3600)),
            ["daily", hm] => Ok(Schedule::Daily(minute_of_day(hm)?)),
            ["weekly", day, hm] => {
                let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let d = days
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(day))
                    .ok_or_else(|| format!("{day:?}: a day is mon, tue, wed, thu, fri, sat or sun"))?;
                Ok(Schedule::Weekly(u32::try_from(d).unwrap_or(0) * 1440 + minute_of_day(hm)?))
            }
            ["every", n] => {
                let (num, unit) = n.split_at(n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len()));
                let scale = match unit {
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(format!("{n:?}: expected a number and m, h or d (every 15m)")),
                };
                let secs = num.parse::<u64>().map_err(|_| format!("{n:?}: expected a number and m, h or d"))?;
                match secs.checked_mul(scale) {
                    Some(t) if (300..=366 * 86_400).contains(&t) => Ok(Schedule::Every(t)),
                    _ => Err(format!("{n:?}: from 5m to 366d")),
                }
            }
            _ => Err(format!("{s:?}: hourly, daily HH:MM, weekly DAY HH:MM or every N(m|h|d), in UTC")),
        }
    }

    /// The schedule as it is written (`daily 03:30`).
    pub fn describe(self) -> String {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60 % 24, m % 60);
        match self {
            Schedule::Every(3600) => "hourly".into(),
            Schedule::Every(s) if s % 86_400 == 0 => format!("every {}d", s / 86_400),
            Schedule::Every(s) if s % 3600 == 0 => format!("every {}h", s / 3600),
            Schedule::Every(s) => format!("every {}m", s / 60),
            Schedule::Daily(m) => format!("daily {}", hm(m)),
            Schedule::Weekly(m) => {
                let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                format!("weekly {} {}", days[usize::try_from(m / 1440).unwrap_or(0) % 7], hm(m % 1440))
            }
        }
    }

    /// The first time after `now` (seconds since the epoch, UTC) this schedule fires.
    pub fn next_after(self, now: u64) -> u64 {
        let next_on = |period: u64, offset: u64| {
            let base = now - now % period;
            let t = base + offset;
            if t > now {
                t
            } else {
                t + period
            }
        };
        match self {
            Schedule::Every(p) => next_on(p, 0),
            Schedule::Daily(m) => next_on(86_400, u64::from(m) * 60),
            // The epoch was a Thursday: weeks counted from Monday start 3 days before it.
            Schedule::Weekly(m) => {
                let shifted = now + 3 * 86_400;
                let period = 7 * 86_400;
                let base = shifted - shifted % period;
                let t = base + u64::from(m) * 60;
                (if t > shifted { t } else { t + period }) - 3 * 86_400
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_fire_at_their_next_time() {
        assert_eq!(Schedule::parse("hourly"), Ok(Schedule::Every(3600)));
        assert_eq!(Schedule::parse("every 15m"), Ok(Schedule::Every(900)));
        assert_eq!(Schedule::parse("daily 03:30"), Ok(Schedule::Daily(210)));
        for bad in ["every 1m", "daily 24:00", "daily 3", "weekly mon", "sometimes", "every 5x", "daily 03:300"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        // 2026-12-02 (a Wednesday) 10:00:00 UTC.
        let now = 1_796_205_600;
        assert_eq!(Schedule::Daily(210).next_after(now), now - 10 * 3600 + 86_400 + 210 * 60);
        assert_eq!(Schedule::Daily(11 * 60).next_after(now), now + 3600);
        assert_eq!(Schedule::Every(3600).next_after(now), now + 3600);
        // Next Monday 03:30 is 2026-12-07 03:30: 4 days 17.5 hours later.
        assert_eq!(Schedule::Weekly(210).next_after(now), now + 4 * 86_400 + 17 * 3600 + 1800);
        // Wednesday 10:30 is later today.
        assert_eq!(Schedule::Weekly(2 * 1440 + 630).next_after(now), now + 1800);
    }
}
