//! Authentication, free of HTTP: verifying bearer tokens into a `Principal`.

pub mod jwt;

pub use jwt::{AuthError, JwtVerifier};
