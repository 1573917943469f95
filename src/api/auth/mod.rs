//! Who may call what: bearer tokens (static, or signed JWTs), the scopes
//! they grant, and the one layer that checks them for every protocol.
//!
//! The layer sits where every call has become a gRPC call (inside the REST,
//! Connect and gRPC-Web layers), so gRPC, gRPC-Web, Connect and REST are
//! guarded by the same code: UNAUTHENTICATED (401 with `WWW-Authenticate:
//! Bearer`) without a valid token, PERMISSION_DENIED (403) without the
//! method's scope. Both are decided before the handler runs, so neither
//! says anything about the products asked for. The caller's name is put on
//! the server span (`enduser.id`) and, through [`crate::domain::actor`],
//! into the history metadata (`actor`) of every change the call makes.

mod layer;
mod scopes;
mod tokens;

pub use layer::{Auth, AuthLayer};
pub use scopes::{ADMIN, READ, RESERVE, required_scope};
pub use tokens::{AuthError, Authenticator, Principal};
