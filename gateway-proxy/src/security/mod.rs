//! Who is calling: the identity a request carries once the route's security policy has
//! authenticated it. Authentication sets it; rate limits, quotas and the upstream identity
//! header read it.

mod identity;

pub use identity::Identity;
