//! Weekly time windows in a time zone.

use crate::file::{Day, Window};
use chrono::{Datelike, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

#[derive(Debug, Clone)]
pub(crate) struct CompiledWindow {
    tz: Tz,
    /// Bit per weekday, Monday = bit 0.
    days: u8,
    /// Minutes since midnight; `to` may be 1440.
    from: u32,
    to: u32,
}

fn minutes(s: &str, allow_24: bool) -> Result<u32, String> {
    if allow_24 && s == "24:00" {
        return Ok(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("`{s}` is not a time of day as HH:MM"))?;
    if s.len() != 5 {
        return Err(format!("`{s}` is not a time of day as HH:MM"));
    }
    Ok(t.hour() * 60 + t.minute())
}

fn day_bit(d: Day) -> u8 {
    1 << (d as u8)
}

impl CompiledWindow {
    pub(crate) fn compile(w: &Window) -> Result<CompiledWindow, String> {
        let tz: Tz = match &w.timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse()
                .map_err(|_| format!("timezone: unknown time zone `{name}`"))?,
        };
        let days = match &w.days {
            None => 0x7f,
            Some(list) if list.is_empty() => {
                return Err("days: empty list; omit it for every day".into())
            }
            Some(list) => list.iter().fold(0u8, |acc, d| acc | day_bit(*d)),
        };
        let from = minutes(&w.from, false).map_err(|e| format!("from: {e}"))?;
        let to = minutes(&w.to, true).map_err(|e| format!("to: {e}"))?;
        if from == to {
            return Err("from and to are equal; omit the window for all day".into());
        }
        Ok(CompiledWindow { tz, days, from, to })
    }

    pub(crate) fn contains(&self, now: chrono::DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let minute = local.hour() * 60 + local.minute();
        let today = 1u8 << local.weekday().num_days_from_monday();
        let yesterday = 1u8 << local.weekday().pred().num_days_from_monday();
        if self.from < self.to {
            self.days & today != 0 && minute >= self.from && minute < self.to
        } else {
            // Wraps midnight: the part after midnight belongs to the previous day's window.
            (self.days & today != 0 && minute >= self.from)
                || (self.days & yesterday != 0 && minute < self.to)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(days: Option<Vec<Day>>, from: &str, to: &str) -> CompiledWindow {
        CompiledWindow::compile(&Window {
            timezone: Some("Europe/Berlin".into()),
            days,
            from: from.into(),
            to: to.into(),
        })
        .unwrap()
    }

    #[test]
    fn plain_window_in_zone() {
        let w = window(Some(vec![Day::Sat, Day::Sun]), "02:00", "04:00");
        // 2026-11-21 is a Saturday; Berlin is UTC+1 in November.
        assert!(w.contains(at("2026-11-21T03:00:00+01:00")));
        assert!(w.contains(at("2026-11-21T01:00:00Z")));
        assert!(!w.contains(at("2026-11-21T04:00:00+01:00")));
        assert!(!w.contains(at("2026-11-20T03:00:00+01:00")));
    }

    #[test]
    fn wrapping_window_belongs_to_opening_day() {
        let w = window(Some(vec![Day::Fri]), "22:00", "02:00");
        assert!(w.contains(at("2026-11-20T23:00:00+01:00"))); // Friday night
        assert!(w.contains(at("2026-11-21T01:30:00+01:00"))); // Saturday early, opened Friday
        assert!(!w.contains(at("2026-11-20T01:30:00+01:00"))); // Friday early, opened Thursday
        assert!(!w.contains(at("2026-11-21T22:30:00+01:00")));
    }

    #[test]
    fn rejects_bad_fields() {
        let bad = |tz: &str, from: &str, to: &str| {
            CompiledWindow::compile(&Window {
                timezone: Some(tz.into()),
                days: None,
                from: from.into(),
                to: to.into(),
            })
            .unwrap_err()
        };
        assert!(bad("Mars/Base", "01:00", "02:00").contains("timezone"));
        assert!(bad("UTC", "1:00", "02:00").contains("from"));
        assert!(bad("UTC", "01:00", "25:00").contains("to"));
        assert!(bad("UTC", "01:00", "01:00").contains("equal"));
    }
}
