//! `herald token`: mint a JWT for development and tests: a 0.x token (the `mercure` claim), or
//! with `--issuer` and `--audience` a Mercure 1.0 access token (`typ: at+jwt`).

use clap::Args;

use crate::auth::{
    Algorithm, MintAccessClaims, MintClaims, mint_access_token, mint_admin, mint_hmac,
};

use super::usage;

/// `herald token` options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The HMAC secret (same as the hub's --jwt-key)
    #[arg(long, env = "HERALD_KEY", hide_env_values = true)]
    pub key: String,
    /// A topic selector the token may publish to (repeatable; `*` for all)
    #[arg(long, value_name = "SELECTOR")]
    pub publish: Vec<String>,
    /// A topic selector whose private updates the token may receive (repeatable; `*` for all)
    #[arg(long, value_name = "SELECTOR")]
    pub subscribe: Vec<String>,
    /// Lifetime, e.g. `1h`, `30d` [default: no expiry]
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// HS256, HS384 or HS512
    #[arg(long, default_value = "HS256")]
    pub algorithm: String,
    /// JSON for the `mercure.payload` claim (1.0: the `subscribe` entry's `payload`)
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// An admin token instead (`herald.admin: true`, for `herald backup`); give the hub's
    /// publisher key as --key
    #[arg(long, conflicts_with_all = ["publish", "subscribe", "payload"])]
    pub admin: bool,
    /// Mint a Mercure 1.0 access token (`typ: at+jwt`) from this issuer (`iss`); the hub must
    /// trust it (`--jwt-issuer`)
    #[arg(long, value_name = "ISS", requires = "audience")]
    pub issuer: Option<String>,
    /// Mercure 1.0: the hub's resource identifier (`aud`), e.g.
    /// `https://example.com/.well-known/mercure`
    #[arg(long, value_name = "URL", requires = "issuer")]
    pub audience: Option<String>,
    /// Mercure 1.0: the --publish/--subscribe topics are URL Patterns (`*` stays the wildcard)
    #[arg(long, requires = "issuer")]
    pub urlpattern: bool,
    /// Mercure 1.0: the token's subject (`sub`)
    #[arg(long, value_name = "SUB", requires = "issuer")]
    pub subject: Option<String>,
}

/// Prints the token.
pub(super) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let algorithm = args
        .algorithm
        .parse::<Algorithm>()
        .map_err(|error| usage(format!("invalid --algorithm: {error}")))?;
    let ttl = args
        .ttl
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|error| usage(format!("invalid --ttl: {error}")))?;
    let payload = args
        .payload
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|error| usage(format!("invalid --payload JSON: {error}")))?;
    let token = if args.admin {
        mint_admin(args.key.as_bytes(), algorithm, ttl).map_err(usage)?
    } else if args.publish.is_empty() && args.subscribe.is_empty() {
        return Err(usage(
            "give at least one --publish or --subscribe selector, or --admin",
        ));
    } else if let (Some(issuer), Some(audience)) = (&args.issuer, &args.audience) {
        let claims = MintAccessClaims {
            issuer: issuer.clone(),
            audience: audience.clone(),
            publish: args.publish.clone(),
            subscribe: args.subscribe.clone(),
            urlpattern: args.urlpattern,
            payload,
            subject: args.subject.clone(),
            // Access tokens must expire.
            ttl: ttl.unwrap_or(std::time::Duration::from_secs(3600)),
        };
        mint_access_token(args.key.as_bytes(), algorithm, &claims).map_err(usage)?
    } else {
        let claims = MintClaims {
            publish: args.publish.clone(),
            subscribe: args.subscribe.clone(),
            payload,
            ttl,
        };
        mint_hmac(args.key.as_bytes(), algorithm, &claims).map_err(usage)?
    };
    println!("{token}");
    Ok(())
}
