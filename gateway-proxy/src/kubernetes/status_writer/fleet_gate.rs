//! The statuses the writer applies when a fleet decides `Programmed`
//! (`kubernetes::serving::verdict`): the translation's, with each Gateway's verdict, kept as
//! the same `Arc` while nothing changed so that unchanged inputs still take the writer's
//! shortcuts.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::kubernetes::serving::verdict::{Fleet, Gate};
use gantry_translate::status::ObjectStatus;

pub(super) struct FleetGate {
    gate: Gate,
    fleet: watch::Receiver<Arc<Fleet>>,
    /// The last inputs and output.
    translated: Option<Arc<Vec<ObjectStatus>>>,
    fleet_seen: Option<Arc<Fleet>>,
    output: Arc<Vec<ObjectStatus>>,
    /// When a `Pending` verdict times out.
    pub(super) deadline: Option<Instant>,
}

impl FleetGate {
    pub(super) fn new(gate: Gate, fleet: watch::Receiver<Arc<Fleet>>) -> Self {
        Self {
            gate,
            fleet,
            translated: None,
            fleet_seen: None,
            output: Arc::default(),
            deadline: None,
        }
    }

    /// The statuses to write for `translated`; `None` until the fleet's Pods were listed or
    /// could not be.
    pub(super) fn desired(
        &mut self,
        translated: &Arc<Vec<ObjectStatus>>,
    ) -> Option<Arc<Vec<ObjectStatus>>> {
        let fleet = self.fleet.borrow_and_update().clone();
        if !fleet.synced && fleet.error.is_none() {
            return None;
        }
        let now = Instant::now();
        let same_inputs = self
            .translated
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, translated))
            && self
                .fleet_seen
                .as_ref()
                .is_some_and(|f| Arc::ptr_eq(f, &fleet));
        let due = self.deadline.is_some_and(|d| now >= d);
        if same_inputs && !due {
            return Some(self.output.clone());
        }
        let (output, deadline) = self.gate.apply(translated, &fleet, now.into_std());
        self.deadline = deadline.map(Instant::from_std);
        self.translated = Some(translated.clone());
        self.fleet_seen = Some(fleet);
        if *self.output != output {
            self.output = Arc::new(output);
        }
        Some(self.output.clone())
    }

    /// Waits until the fleet changes (forever when its sender is gone).
    pub(super) async fn changed(&mut self) {
        if self.fleet.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
