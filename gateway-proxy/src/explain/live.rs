//! `explain` on the configuration a running proxy serves: the dashboard's search box
//! (`GET /ui/api/explain`). The same walk as the command, over the live objects, their
//! translation and the snapshot serving now, so the answer is the data plane's own.

use gantry_translate::translate::Translation;

use super::{Loaded, Output, Query, explain_loaded};
use crate::admin::ui::{ExplainAnswer, ExplainAsk};
use crate::control::Published;

/// Explains `ask` against what `published` serves now.
pub fn explain_live(published: &Published, ask: &ExplainAsk) -> ExplainAnswer {
    let view = published.view();
    let Some(store) = view.store.clone() else {
        return ExplainAnswer::Unavailable("no configuration is loaded yet".to_owned());
    };
    let (method, url) = match ask.request.trim().split_once(char::is_whitespace) {
        Some((method, url)) => (method.to_owned(), url.trim().to_owned()),
        None => ("GET".to_owned(), ask.request.trim().to_owned()),
    };
    let query = Query {
        method,
        url,
        headers: ask.headers.clone(),
        sni: ask.sni.clone().filter(|sni| !sni.is_empty()),
        client_ip: None,
    };
    // The walk reads the translation's statuses (why a route is not attached); the live view
    // holds them stamped, which changes no reason or message.
    let translation = Translation {
        ir: (*view.ir).clone(),
        statuses: (*view.statuses).clone(),
    };
    let snapshot = published.snapshot();
    let loaded = Loaded {
        store: &store,
        translation: &translation,
        snapshot: &snapshot,
    };
    match explain_loaded(&loaded, &query, None) {
        Ok(explanation) => ExplainAnswer::Explained {
            version: snapshot.version,
            text: explanation.render(Output::Text),
            json: explanation.render(Output::Json),
        },
        Err(error) => ExplainAnswer::BadRequest(error.to_string()),
    }
}
