//! Command-line values the examples share.

use std::net::SocketAddr;
use std::str::FromStr;

/// Where to serve Prometheus metrics: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

impl FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Self(None));
        }
        s.parse().map(|a| Self(Some(a))).map_err(|e| {
            format!("`{s}` is neither an address such as 127.0.0.1:9464 nor `off`: {e}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_address_is_an_address_or_off() {
        assert_eq!("off".parse::<MetricsAddr>().unwrap(), MetricsAddr(None));
        assert_eq!(
            "127.0.0.1:9464".parse::<MetricsAddr>().unwrap(),
            MetricsAddr(Some("127.0.0.1:9464".parse().unwrap()))
        );
        let error = "9464".parse::<MetricsAddr>().unwrap_err();
        assert!(error.contains("`9464`"), "{error}");
    }
}
