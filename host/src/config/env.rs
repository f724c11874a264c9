//! Environment access, behind a trait so tests can inject variables without touching the
//! process environment.

/// A source of environment variables. Empty values count as unset.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// Any `Fn(&str) -> Option<String>` is an environment (handy in tests).
impl<F> Env for F
where
    F: Fn(&str) -> Option<String>,
{
    fn get(&self, key: &str) -> Option<String> {
        self(key).filter(|v| !v.is_empty())
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyEnv;

impl Env for EmptyEnv {
    fn get(&self, _key: &str) -> Option<String> {
        None
    }
}

// The variables the config layer reads.
pub const LIVEKIT_API_KEY: &str = "LIVEKIT_API_KEY";
pub const LIVEKIT_API_SECRET: &str = "LIVEKIT_API_SECRET";
pub const LIVEKIT_WS_URL: &str = "LIVEKIT_WS_URL";
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const AZURE_STORAGE_ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
pub const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
