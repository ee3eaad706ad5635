//! The `StoreRaft` administration of one replica, as the receiving store
//! performs it: open an uninitialized replica for a peer change, destroy a
//! removed one, campaign for a leader transfer, wake from hibernation.
//! (The leader's side is in [`super::conf_change`] and
//! [`super::transfer_leader`].)

use arbor_proto::{
    CampaignRequest, CampaignResponse, DestroyPeerRequest, DestroyPeerResponse, OpenPeerRequest,
    OpenPeerResponse, RegionDescriptor, WakeRegionRequest, WakeRegionResponse,
};
use tonic::Status;

use crate::error::RaftstoreError;
use crate::store::{ReplicaChange, StoreNode};

fn descriptor_of(region: Option<RegionDescriptor>) -> Result<RegionDescriptor, RaftstoreError> {
    let region = region.ok_or_else(|| RaftstoreError::InvalidArgument {
        hint: "the request names no region".into(),
    })?;
    if region.region_id == 0 {
        return Err(RaftstoreError::InvalidArgument {
            hint: "region id 0".into(),
        });
    }
    Ok(region)
}

fn answer(region_id: u64, change: ReplicaChange) -> Result<(), Status> {
    match change {
        ReplicaChange::Done => Ok(()),
        ReplicaChange::Refused { hint } => Err(Status::failed_precondition(format!(
            "region {region_id}: {hint}"
        ))),
    }
}

/// `StoreRaft.OpenPeer`.
pub async fn open_peer(
    node: &StoreNode,
    request: OpenPeerRequest,
) -> Result<OpenPeerResponse, Status> {
    let region = descriptor_of(request.region)?;
    let region_id = region.region_id;
    let change = node.open_peer(region).await?;
    answer(region_id, change).map(|()| OpenPeerResponse {})
}

/// `StoreRaft.DestroyPeer`.
pub async fn destroy_peer(
    node: &StoreNode,
    request: DestroyPeerRequest,
) -> Result<DestroyPeerResponse, Status> {
    let region = descriptor_of(request.region)?;
    let region_id = region.region_id;
    let change = node.destroy_peer(region).await?;
    answer(region_id, change).map(|()| DestroyPeerResponse {})
}

/// `StoreRaft.Campaign`: wake the replica and call an election now.
pub async fn campaign(
    node: &StoreNode,
    request: CampaignRequest,
) -> Result<CampaignResponse, Status> {
    let region_id = request.region_id;
    let Some(peer) = node.peer(region_id) else {
        return Err(RaftstoreError::RegionNotFound { region_id }.into());
    };
    peer.wake_now();
    peer.raft()
        .trigger()
        .elect()
        .await
        .map_err(|fatal| RaftstoreError::Raft {
            region_id,
            hint: format!("calling an election: {fatal}"),
        })?;
    Ok(CampaignResponse {})
}

/// `StoreRaft.WakeRegion`.
pub async fn wake_region(
    node: &StoreNode,
    request: WakeRegionRequest,
) -> Result<WakeRegionResponse, Status> {
    let region_id = request.region_id;
    let Some(peer) = node.peer(region_id) else {
        return Err(RaftstoreError::RegionNotFound { region_id }.into());
    };
    peer.wake_now();
    Ok(WakeRegionResponse {})
}
