//! The OCI distribution side of shoal: what a pull through the mirror
//! port may ask for ([`reference`]), how it is refused ([`errors`]), what
//! registries ask of a client ([`auth`]), and how containerd is pointed
//! at the mirror ([`hosts`]). Pure: no I/O here; the agent
//! serves these routes and talks to the registries.

pub mod auth;
pub mod errors;
pub mod hosts;
pub mod manifest;
pub mod reference;

pub use errors::{ErrorCode, OciError};
pub use manifest::{Descriptor, Manifest};
pub use reference::{Algorithm, Digest, Name, RefError, Reference, Route, RouteError, route};
