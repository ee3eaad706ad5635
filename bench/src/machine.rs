//! What the numbers were taken on: read from /proc and /etc, parsed by pure
//! functions.

use crate::report::Machine;

pub fn cpu_model_of(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

pub fn memory_gib_of(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
}

pub fn load_of(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

pub fn os_of(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn load_now() -> Option<f64> {
    load_of(&read("/proc/loadavg"))
}

pub fn describe(git_commit: &str, arbor_bin: &str) -> Machine {
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: memory_gib_of(&read("/proc/meminfo")).unwrap_or(0.0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu_model: cpu_model_of(&read("/proc/cpuinfo")).unwrap_or_else(|| "unknown".into()),
        os: os_of(&read("/etc/os-release")).unwrap_or_else(|| "unknown".into()),
        git_commit: git_commit.to_string(),
        load_before: load_now(),
        load_after: None,
        arbor_bin: arbor_bin.to_string(),
    }
}

/// The UTC calendar date of a Unix time, `YYYY-MM-DD` (Howard Hinnant's
/// days-to-civil algorithm; chrono here is built without a clock).
pub fn utc_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        assert_eq!(
            cpu_model_of("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(memory_gib_of("MemTotal:       25165824 kB\n"), Some(24.0));
        assert_eq!(load_of("1.79 1.95 1.68 3/250 1234\n"), Some(1.79));
        assert_eq!(
            os_of("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn utc_dates_follow_the_calendar() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31");
        assert_eq!(utc_date(1_735_689_600), "2025-01-01");
    }
}
