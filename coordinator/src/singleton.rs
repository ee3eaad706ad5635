//! Singleton duties served by the lease holder: timestamps and ids, each
//! from a window whose fence root recorded first (see [`crate::allocator`]).

use arbor_proto::root_event::Kind;
use arbor_proto::{IdFenceRaised, LeaseFence, TsoFenceRaised};

use crate::allocator::{IdWindow, TsoWindow, WindowError};
use crate::error::CoordinatorError;
use crate::lease::LocalTenure;
use crate::service::Coordinator;

/// Windows of the current tenure; replaced when the generation changes.
#[derive(Debug, Default)]
pub struct Allocators {
    pub tso: Option<TsoWindow>,
    pub ids: Option<IdWindow>,
}

/// The tenure while this coordinator holds the lease; otherwise the
/// redirect to the holder root names.
pub(crate) fn holder_tenure(coordinator: &Coordinator) -> Result<LocalTenure, CoordinatorError> {
    let tenure = coordinator.tenure();
    if tenure.holds(coordinator.now_ms()) {
        return Ok(tenure);
    }
    let lease = coordinator.view().root.lease.clone().unwrap_or_default();
    Err(CoordinatorError::NotLeaseHolder {
        holder_id: lease.holder_id,
        holder_address: lease.holder_address,
        generation: lease.generation,
    })
}

fn fence_of(coordinator: &Coordinator, tenure: LocalTenure) -> LeaseFence {
    LeaseFence {
        holder_id: coordinator.id.clone(),
        generation: tenure.generation,
    }
}

/// Proposes a fence raise under the lease fence; Ok only if root applied it.
async fn raise(
    coordinator: &Coordinator,
    tenure: LocalTenure,
    event: Kind,
) -> Result<(), CoordinatorError> {
    let answer = coordinator
        .root
        .propose_fenced(event, Some(fence_of(coordinator, tenure)))
        .await?;
    if answer.accepted {
        Ok(())
    } else {
        Err(CoordinatorError::FenceNotRaised {
            detail: answer.rejection_detail,
        })
    }
}

pub async fn timestamps(
    coordinator: &Coordinator,
    count: u32,
) -> Result<(u64, u64), CoordinatorError> {
    let tenure = holder_tenure(coordinator)?;
    let mut allocators = coordinator.allocators.lock().await;
    if allocators.tso.map(|w| w.generation) != Some(tenure.generation) {
        let root = coordinator.root.read_state().await?;
        let window = TsoWindow::open(tenure.generation, root.tso_fence, coordinator.now_ms());
        let event = Kind::TsoFenceRaised(TsoFenceRaised {
            expected_fence: root.tso_fence,
            new_fence: window.fence_ms,
        });
        raise(coordinator, tenure, event).await?;
        allocators.tso = Some(window);
    }
    let window = allocators.tso.as_mut().expect("opened just above");
    if let Some(new_fence) = window.refill_to(coordinator.now_ms()) {
        let event = Kind::TsoFenceRaised(TsoFenceRaised {
            expected_fence: window.fence_ms,
            new_fence,
        });
        raise(coordinator, tenure, event).await?;
        window.raised(new_fence);
    }
    // Re-check: the tenure may have lapsed while root was answering.
    let tenure = holder_tenure(coordinator)?;
    match window.take(count, coordinator.now_ms()) {
        Ok(first) => Ok((first, tenure.generation)),
        Err(error) => Err(window_error(error, "timestamps")),
    }
}

pub async fn ids(coordinator: &Coordinator, count: u32) -> Result<(u64, u64), CoordinatorError> {
    let tenure = holder_tenure(coordinator)?;
    let mut allocators = coordinator.allocators.lock().await;
    if allocators.ids.map(|w| w.generation) != Some(tenure.generation) {
        let root = coordinator.root.read_state().await?;
        let window = IdWindow::open(tenure.generation, root.id_fence);
        let event = Kind::IdFenceRaised(IdFenceRaised {
            expected_fence: root.id_fence,
            new_fence: window.fence,
        });
        raise(coordinator, tenure, event).await?;
        allocators.ids = Some(window);
    }
    let window = allocators.ids.as_mut().expect("opened just above");
    let first = match window.take(count) {
        Err(WindowError::Exhausted) => {
            let new_fence = window.refill_to();
            let event = Kind::IdFenceRaised(IdFenceRaised {
                expected_fence: window.fence,
                new_fence,
            });
            raise(coordinator, tenure, event).await?;
            window.raised(new_fence);
            window.take(count)
        }
        other => other,
    }
    .map_err(|e| window_error(e, "ids"))?;
    let tenure = holder_tenure(coordinator)?;
    Ok((first, tenure.generation))
}

fn window_error(error: WindowError, what: &str) -> CoordinatorError {
    match error {
        WindowError::BadCount => CoordinatorError::InvalidArgument {
            hint: format!("ask for between 1 and the per-request maximum of {what}"),
        },
        WindowError::Exhausted => CoordinatorError::FenceNotRaised {
            detail: format!("the {what} window is used up; retry"),
        },
    }
}
