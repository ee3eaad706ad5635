//! Bind address versus advertised address.
//!
//! A process binds `--listen` (which may be `0.0.0.0:PORT`, every interface,
//! as in a container) and tells others to dial `--advertise` (a name or IP
//! they can reach). Root peers know each other by the `--peers` list; stores
//! and coordinators report their advertised address through heartbeats and
//! root, which is what other processes dial. An unspecified bind address is
//! never advertised: no other host can dial `0.0.0.0`.

use std::net::SocketAddr;

/// The address others dial: `advertise` when given, else `listen` unless it
/// is unspecified (then an error that names the fix).
pub fn resolve(listen: SocketAddr, advertise: Option<&str>) -> Result<String, String> {
    if let Some(advertise) = advertise.map(str::trim).filter(|a| !a.is_empty()) {
        return check_host_port(advertise).map(|()| advertise.to_string());
    }
    if listen.ip().is_unspecified() {
        return Err(format!(
            "--listen {listen} binds every interface, which no other process can dial: \
             set --advertise (env ARBOR_ADVERTISE) to the host:port others reach this \
             process at, e.g. my-host:{port} or 10.0.0.5:{port}",
            port = listen.port()
        ));
    }
    Ok(listen.to_string())
}

/// A root peer's advertised address: `--advertise`, else its own entry in
/// `--peers` (the address the other peers already dial), else the rule of
/// [`resolve`].
pub fn resolve_root(
    listen: SocketAddr,
    advertise: Option<&str>,
    own_peer_entry: Option<&str>,
) -> Result<String, String> {
    resolve(listen, advertise.or(own_peer_entry))
}

/// `host:port` with a numeric port and no scheme: clients prepend `http://`.
fn check_host_port(address: &str) -> Result<(), String> {
    let hint = "expected host:port, e.g. store-1:7100 or 10.0.0.5:7100";
    if address.contains("://") {
        return Err(format!(
            "--advertise {address:?} has a scheme; {hint} (clients add http:// themselves)"
        ));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("--advertise {address:?} has no port; {hint}"));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(format!("--advertise {address:?} is not host:port; {hint}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn a_specific_listen_address_is_advertised_by_default() {
        assert_eq!(
            resolve(addr("10.1.2.3:7100"), None).as_deref(),
            Ok("10.1.2.3:7100")
        );
    }

    #[test]
    fn an_unspecified_listen_address_needs_an_advertise_address() {
        let error = resolve(addr("0.0.0.0:7100"), None).expect_err("0.0.0.0 is not dialable");
        assert!(error.contains("--advertise"), "{error}");
        assert!(error.contains("ARBOR_ADVERTISE"), "{error}");
        assert!(resolve(addr("[::]:7100"), Some("  ")).is_err());
    }

    #[test]
    fn an_explicit_advertise_address_wins_over_the_bind_address() {
        assert_eq!(
            resolve(addr("0.0.0.0:7100"), Some("store-2:7100")).as_deref(),
            Ok("store-2:7100")
        );
    }

    #[test]
    fn advertise_addresses_without_a_port_or_with_a_scheme_are_rejected() {
        for bad in [
            "store-2",
            "http://store-2:7100",
            ":7100",
            "store-2:x",
            "store-2:0",
        ] {
            assert!(
                resolve(addr("0.0.0.0:7100"), Some(bad)).is_err(),
                "{bad} was accepted"
            );
        }
        assert!(resolve(addr("0.0.0.0:7100"), Some("[fd00::5]:7100")).is_ok());
    }

    #[test]
    fn a_root_peer_advertises_its_own_peers_entry_by_default() {
        assert_eq!(
            resolve_root(addr("0.0.0.0:7100"), None, Some("root-1:7100")).as_deref(),
            Ok("root-1:7100")
        );
        assert_eq!(
            resolve_root(
                addr("0.0.0.0:7100"),
                Some("10.0.0.1:7100"),
                Some("root-1:7100")
            )
            .as_deref(),
            Ok("10.0.0.1:7100")
        );
    }
}
