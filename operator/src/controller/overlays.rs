//! Overlays as the controllers apply them: patched locally ([`overlay::apply`]), then every
//! patched object is shown to the API server as a dry run, so what only it checks (names,
//! immutable fields) is `InvalidParameters` with its own message before anything is written.

use super::parameters::Invalid;
use super::{Context, Error};
use crate::infra::overlay::{self, OverlaySet};
use crate::infra::render::DesiredObject;

/// The objects to apply, or why the overlays make them unusable.
pub async fn overlaid(
    ctx: &Context,
    objects: Vec<DesiredObject>,
    overlays: &OverlaySet,
) -> Result<Result<Vec<DesiredObject>, Invalid>, Error> {
    let objects = match overlay::apply(objects, overlays) {
        Ok(objects) => objects,
        Err(message) => return Ok(Err(Invalid(message))),
    };
    for object in objects.iter().filter(|o| overlays.patches(o.kind)) {
        if let Some(message) = ctx.applier.refusal(object).await? {
            return Ok(Err(Invalid(format!(
                "the overlays of {:?} {} leave an object the API server refuses: {message}",
                object.kind, object.name
            ))));
        }
    }
    Ok(Ok(objects))
}
