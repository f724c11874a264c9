//! psrpc identifiers: a prefix plus 12 characters from `[a-zA-Z0-9]`, so they never need
//! sanitizing inside channel names (spec §1.6).

use rand::Rng;
use rand::distr::Alphanumeric;

pub fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    id.extend(
        rand::rng()
            .sample_iter(Alphanumeric)
            .take(12)
            .map(char::from),
    );
    id
}

pub fn new_request_id() -> String {
    new_id("REQ_")
}

pub fn new_client_id() -> String {
    new_id("CLI_")
}

pub fn new_server_id() -> String {
    new_id("SRV_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_the_psrpc_shape() {
        let id = super::new_server_id();
        assert_eq!(id.len(), 16);
        assert!(id.starts_with("SRV_"));
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(super::new_server_id(), super::new_server_id());
    }
}
