//! Bearer-token access control for Analytics and Admin.
//!
//! The server keeps only the SHA-256 digest of the token ([`TokenHash`]) and
//! compares the digest of the presented token with it in constant time (every
//! byte is examined whatever the first difference), so neither the token nor
//! its length leaks through memory dumps or timing. A request without a valid
//! `authorization: Bearer <token>` header gets `UNAUTHENTICATED` before any
//! handler runs.

use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A bearer token. Its `Debug` output never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; rejects empty tokens and characters not allowed in an
    /// HTTP header value, and trims surrounding whitespace (a trailing newline
    /// of a token file is not part of the token).
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the token is empty".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Self(token.to_string()))
    }

    /// A fresh random token: 32 bytes from the OS, hex encoded.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The secret itself, for writing it where the operator asked.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value of the `authorization` header that presents this token.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The SHA-256 digest of the accepted token: all the server keeps.
#[derive(Clone)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Digest of `token`.
    pub fn of(token: &Token) -> Self {
        Self(digest(token.0.as_bytes()))
    }

    /// Whether `presented` is the token, in time independent of where it differs.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let other = digest(presented);
        self.0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The interceptor guarding Analytics and Admin.
#[derive(Debug, Clone)]
pub struct BearerAuth {
    hash: TokenHash,
}

impl BearerAuth {
    /// Accepts exactly the token whose digest is `hash`.
    pub fn new(hash: TokenHash) -> Self {
        Self { hash }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        match presented {
            Some(token) if self.hash.matches(token) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` header",
            )),
        }
    }
}

/// Client side: adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct ClientAuth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl ClientAuth {
    /// Presents `token`.
    pub fn new(token: &Token) -> Self {
        // `Token::new` admits only printable ASCII, which is a valid header value;
        // a generated token is hex.
        let value = token
            .header_value()
            .parse()
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static(""));
        Self(value)
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth(..)")
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = Token::new("s3cret\n").unwrap();
        let hash = TokenHash::of(&token);
        assert!(hash.matches(b"s3cret"));
        assert!(!hash.matches(b"s3cre"));
        assert!(!hash.matches(b"s3cret "));
        assert!(!hash.matches(b""));
        assert_eq!(format!("{token:?}"), "Token(..)");
        assert!(Token::new("  ").is_err());
        assert!(Token::new("a b").is_err());
        assert_eq!(Token::generate().expose().len(), 64);
    }
}
