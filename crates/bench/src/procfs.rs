//! What `/proc` says about the server under test: its resident memory, CPU time and write
//! system calls, summed over its processes (nginx's workers, say); and this process's
//! open-file limit.

/// The sum of `read` over `pids`; `None` as soon as one of them cannot be read.
pub(super) fn sum(pids: &[u32], read: fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .try_fold(0u64, |total, pid| Some(total + read(*pid)?))
}

/// Write-type system calls of a process, every thread (`syscw` in `/proc/PID/io`): a socket
/// write or `writev` each.
pub(super) fn write_syscalls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("syscw:"))?
        .trim()
        .parse()
        .ok()
}

/// The soft open-file limit of this process (`ulimit -n`), from `/proc/self/limits` (Linux).
pub(super) fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmRSS` of a process, in KiB.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User plus kernel time of a process, every thread, in clock ticks (`/proc/PID/stat`).
pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces and parentheses itself: fields are counted from the
/// last `)`, after which comes field 3.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `AT_CLKTCK`: the auxiliary-vector entry that holds the clock tick rate.
const AT_CLKTCK: u64 = 17;

/// Clock ticks per second, the unit of `/proc/PID/stat` times: what `sysconf(_SC_CLK_TCK)` and
/// `getconf CLK_TCK` answer, read where the C library reads it, the auxiliary vector the
/// kernel hands every process (`/proc/self/auxv`).
pub(super) fn clock_ticks_per_second() -> Option<u64> {
    auxv_value(&std::fs::read("/proc/self/auxv").ok()?, AT_CLKTCK).filter(|hz| *hz > 0)
}

/// The value for `key` in an auxiliary vector: native-endian (key, value) word pairs, ended by
/// key 0.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> Option<u64> {
        let bytes: [u8; WORD] = bytes.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(bytes)).ok()
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        let (name, value) = pair.split_at(WORD);
        match word(name)? {
            0 => return None,
            name if name == key => return word(value),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime_whatever_the_command_name() {
        let stat = "4242 (herald) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 125 0 0 20 0 3 0 \
                    100 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(375));
        let odd = "77 (a) b (c) R 1 77 77 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_cpu_ticks(odd), Some(15));
        assert_eq!(parse_cpu_ticks("77 (short) R 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 0 0 0 0 0 0 0 0 0 0 many 8"), None);
    }

    #[test]
    fn this_process_has_write_calls_a_file_limit_and_sums_over_pids() {
        let me = std::process::id();
        assert!(write_syscalls(me).is_some());
        assert!(open_file_limit().unwrap() > 0);
        let one = sum(&[me], rss_kib).unwrap();
        let two = sum(&[me, me], rss_kib).unwrap();
        assert!(two >= one && two > 0, "{one} {two}");
        assert_eq!(sum(&[me, u32::MAX], rss_kib), None);
        assert_eq!(sum(&[], rss_kib), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_a_clock_rate() {
        let hz = clock_ticks_per_second().unwrap();
        assert!((1..=10_000).contains(&hz), "{hz}");
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX), None);
    }

    #[test]
    fn the_auxiliary_vector_is_read_pair_by_pair_up_to_its_end() {
        let auxv = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|(key, value)| [key.to_ne_bytes(), value.to_ne_bytes()])
                .flatten()
                .collect()
        };
        let vector = auxv(&[(6, 4096), (17, 250), (0, 0), (17, 99)]);
        assert_eq!(auxv_value(&vector, AT_CLKTCK), Some(250));
        assert_eq!(auxv_value(&vector, 6), Some(4096));
        assert_eq!(auxv_value(&vector, 25), None);
        assert_eq!(auxv_value(&auxv(&[(0, 0), (17, 99)]), AT_CLKTCK), None);
        assert_eq!(auxv_value(&vector[..5], AT_CLKTCK), None);
    }
}
