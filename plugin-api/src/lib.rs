//! The stable plugin boundary of the egress host.
//!
//! Status: the sink and renderer traits, the C ABI and the WIT package arrive with the plugin
//! issue. Until then this crate only fixes the version the host will negotiate, so that the
//! host and the first plugins agree on it from day one.

/// Major version of the plugin API. A plugin built for another major is refused.
pub const API_VERSION_MAJOR: u16 = 1;
/// Minor version of the plugin API. A plugin built for a newer minor than the host is refused.
pub const API_VERSION_MINOR: u16 = 0;
