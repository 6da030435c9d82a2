//! Every limit Cutover enforces, by name. Each has a test at its edge somewhere in the workspace.

/// Longest accepted user principal name, in bytes (the sign-in name).
pub const MAX_UPN_LEN: usize = 256;
/// Longest local part (before `@`) of a user principal name.
pub const MAX_UPN_LOCAL_LEN: usize = 64;
/// Longest domain name.
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest display name of a user, group or application.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;
/// Longest free-text attribute (mail, department, description).
pub const MAX_ATTRIBUTE_LEN: usize = 256;
/// Longest accepted password; argon2 input beyond this only costs CPU.
pub const MAX_PASSWORD_LEN: usize = 256;
/// Shortest password an administrator may set for a cloud user.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest redirect URI.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;
/// Most redirect URIs one application may register.
pub const MAX_REDIRECT_URIS: usize = 32;
/// Longest `state` or `nonce` we carry back to a client.
pub const MAX_STATE_LEN: usize = 1024;
/// Longest `scope` parameter.
pub const MAX_SCOPE_LEN: usize = 1024;
/// PKCE code verifier and challenge lengths (RFC 7636 §4.1).
pub const PKCE_MIN_LEN: usize = 43;
pub const PKCE_MAX_LEN: usize = 128;
/// Largest request body the HTTP layer reads, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request body of the campaign endpoints (the API and the admin UI's campaign
/// pages): a campaign at every limit — 50 waves, 20 steps of 16 KiB templates — fits, even
/// form-encoded by the definition editor.
pub const MAX_CAMPAIGN_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Most rows one list request returns (`$top` is clamped to this).
pub const MAX_PAGE_SIZE: u32 = 500;
/// Rows a list request returns when `$top` is not given.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The rows one page holds for a requested `$top` (0 means "not given").
pub const fn page_size(top: u32) -> u32 {
    if top == 0 {
        DEFAULT_PAGE_SIZE
    } else if top > MAX_PAGE_SIZE {
        MAX_PAGE_SIZE
    } else {
        top
    }
}

/// How long an authorization code may be redeemed, in seconds.
pub const AUTH_CODE_TTL_SECS: i64 = 60;
/// How long a sign-in transaction (the pages between authorize and code) lives, in seconds.
pub const SIGN_IN_TXN_TTL_SECS: i64 = 15 * 60;
/// Lifetime of access and ID tokens, in seconds.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 60 * 60;
/// Lifetime of a refresh token (each rotation issues a fresh one), in seconds.
pub const REFRESH_TOKEN_TTL_SECS: i64 = 14 * 24 * 60 * 60;
/// Lifetime of the browser SSO session, in seconds.
pub const SSO_SESSION_TTL_SECS: i64 = 12 * 60 * 60;
/// How long a retired signing key stays in JWKS: long enough for every token it signed to expire.
pub const RETIRED_KEY_PUBLISH_SECS: i64 = ACCESS_TOKEN_TTL_SECS + 5 * 60;
