//! Parsers of option values (addresses, durations, sizes, rates) and the default connection
//! limit, each naming its flag in the error.

use std::net::SocketAddr;
use std::time::Duration;

use super::{
    ConfigError, FALLBACK_MAX_CONNECTIONS, MAX_FD_RESERVE, MIN_FD_RESERVE, PublishRate, invalid,
};

/// `--listen`: `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT` (resolved now, IPv4 first, e.g.
/// `localhost:8088`), `:PORT` (every interface, as in Go and Caddy) or `PORT` (loopback).
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    parse_address("listen", text)
}

/// An address to listen on, in any of `--listen`'s forms; errors name `flag`.
pub(super) fn parse_address(flag: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    let trimmed = text.trim();
    if let Ok(addr) = trimmed.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = |digits: &str| {
        digits
            .parse::<u16>()
            .map_err(|_| invalid(flag, text, "the port must be a number from 0 to 65535"))
    };
    if let Some(digits) = trimmed.strip_prefix(':') {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port(digits)?)));
    }
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port(trimmed)?)));
    }
    let Some((host, digits)) = trimmed.rsplit_once(':') else {
        return Err(invalid(
            flag,
            text,
            "expected HOST:PORT, IP:PORT, :PORT (every interface) or PORT (loopback)",
        ));
    };
    let port = port(digits)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(invalid(flag, text, "expected HOST:PORT"));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| invalid(flag, text, format!("cannot resolve {host}: {error}")))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| invalid(flag, text, format!("{host} has no address")))
}

pub(super) fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| invalid(flag, text, e))
}

/// The soft open-file limit of this process (`ulimit -n`), from `/proc/self/limits` (Linux).
pub(crate) fn open_file_limit() -> Option<usize> {
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

/// The default connection limit: the open-file limit minus a reserve of 1/32 of it (at least
/// 32, at most 512 descriptors).
pub(crate) fn default_max_connections(open_files: Option<usize>) -> usize {
    match open_files {
        Some(files) => {
            let reserve = (files / 32).clamp(MIN_FD_RESERVE, MAX_FD_RESERVE);
            files.saturating_sub(reserve).max(1)
        }
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// Parses `10/s`, `600/min`, `100/h` or a bare number (per second); the burst defaults to the
/// rate per second, at least 1.
pub(super) fn parse_rate(text: &str, burst: Option<u32>) -> Result<PublishRate, ConfigError> {
    let bad = || {
        invalid(
            "publish-rate",
            text,
            "expected a rate such as 10/s, 600/min or 100/h",
        )
    };
    let (amount, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let amount: f64 = amount.trim().parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(bad()),
    };
    let per_second = amount / seconds;
    if !per_second.is_finite() || per_second * 3600.0 < 1.0 {
        return Err(invalid("publish-rate", text, "must be at least 1 per hour"));
    }
    let burst = burst.unwrap_or_else(|| per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
    Ok(PublishRate { per_second, burst })
}

/// Parses `1048576`, `64KiB`, `1MiB`, `1MB`, `512k`.
pub(super) fn parse_size(flag: &'static str, text: &str) -> Result<usize, ConfigError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits
        .parse()
        .map_err(|_| invalid(flag, text, "expected a size such as 1MiB or 65536"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(invalid(flag, text, "unknown unit (use KiB or MiB)")),
    };
    number
        .checked_mul(factor)
        .filter(|size| *size > 0)
        .ok_or_else(|| invalid(flag, text, "must be above zero and fit in memory"))
}
