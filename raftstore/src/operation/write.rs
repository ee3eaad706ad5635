//! Writes: one client batch becomes one raft entry; apply decides it
//! atomically ([`super::apply`]).

use std::time::Duration;

use arbor_proto::{Mutation, RegionError, WriteRequest, WriteResponse};
use openraft::error::{ClientWriteError, RaftError};

use super::{admit, check_key_size, epoch_not_match};
use crate::command::{CommandMutation, EpochRecord, RegionCommand, RegionResponse};
use crate::config::{
    REQUEST_TIMEOUT_MS, VALUE_BYTES_MAX, WRITE_BATCH_BYTES_MAX, WRITE_MUTATIONS_MAX,
};
use crate::error::RaftstoreError;
use crate::peer::{range_of, server_busy, Peer};
use crate::store::StoreNode;

/// Checks the batch against every size limit and converts it.
pub fn validate_batch(mutations: &[Mutation]) -> Result<Vec<CommandMutation>, RaftstoreError> {
    if mutations.len() > WRITE_MUTATIONS_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "{} mutations exceed the {WRITE_MUTATIONS_MAX}-mutation batch limit",
                mutations.len()
            ),
        });
    }
    let mut batch_bytes = 0usize;
    for mutation in mutations {
        check_key_size(&mutation.key)?;
        if mutation.value.len() > VALUE_BYTES_MAX {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!(
                    "value of {} bytes exceeds the {VALUE_BYTES_MAX}-byte limit",
                    mutation.value.len()
                ),
            });
        }
        batch_bytes += mutation.key.len() + mutation.value.len();
    }
    if batch_bytes > WRITE_BATCH_BYTES_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "write batch of {batch_bytes} bytes exceeds the {WRITE_BATCH_BYTES_MAX}-byte limit"
            ),
        });
    }
    mutations.iter().map(CommandMutation::from_proto).collect()
}

/// Proposes `command` and waits for its apply result.
pub(crate) async fn propose(
    peer: &Peer,
    command: RegionCommand,
) -> Result<Result<RegionResponse, RegionError>, RaftstoreError> {
    let proposal = peer.raft().client_write(command);
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), proposal).await {
        // The entry may still commit later; the caller learns "unknown", not
        // "failed" (see the region client's retry notes).
        Err(_) => Ok(Err(server_busy("timed out waiting for the write to apply"))),
        Ok(Ok(written)) => Ok(Ok(written.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            Ok(Err(peer.not_leader(&forward)))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error)))) => {
            Err(RaftstoreError::Raft {
                region_id: peer.region_id(),
                hint: format!("a data write was refused as a membership change: {error}"),
            })
        }
        Ok(Err(RaftError::Fatal(fatal))) => {
            Ok(Err(server_busy(format!("region raft stopped: {fatal}"))))
        }
    }
}

pub async fn write(
    node: &StoreNode,
    request: WriteRequest,
) -> Result<WriteResponse, RaftstoreError> {
    let mutations = validate_batch(&request.mutations)?;
    let refused = |region_error| WriteResponse {
        region_error: Some(region_error),
        ..Default::default()
    };
    let (peer, descriptor) = match admit(node, request.context.as_ref())? {
        Ok(admitted) => admitted,
        Err(region_error) => return Ok(refused(region_error)),
    };
    let range = range_of(&descriptor);
    if let Some(outside) = mutations
        .iter()
        .find(|mutation| !range.contains(&mutation.key))
    {
        return Ok(refused(Peer::key_not_in_region(&descriptor, &outside.key)));
    }
    if mutations.is_empty() {
        return Ok(WriteResponse {
            applied: true,
            ..Default::default()
        });
    }
    let command = RegionCommand::write(mutations, EpochRecord::of(descriptor.epoch.as_ref()));
    let response = match propose(&peer, command).await? {
        Ok(response) => response,
        Err(region_error) => return Ok(refused(region_error)),
    };
    if let Some(current) = response.epoch_not_match {
        // A split applied between admission and apply; nothing was written.
        return Ok(refused(epoch_not_match(node, current)));
    }
    if response.unsupported_format {
        return Err(RaftstoreError::Raft {
            region_id: descriptor.region_id,
            hint: "the region refused the command format this store wrote".into(),
        });
    }
    Ok(WriteResponse {
        region_error: None,
        applied: response.applied,
        failed_mutation: response.failed_mutation,
        existed: response.existed,
    })
}

#[cfg(test)]
mod tests {
    use arbor_proto::{MutationCondition, MutationOp};

    use super::*;
    use crate::config::KEY_BYTES_MAX;

    fn put(key: Vec<u8>, value: Vec<u8>) -> Mutation {
        Mutation {
            op: MutationOp::Put as i32,
            key,
            value,
            condition: MutationCondition::None as i32,
        }
    }

    #[test]
    fn oversized_keys_values_and_batches_are_invalid() {
        let ok = validate_batch(&[put(vec![1; KEY_BYTES_MAX], vec![2; VALUE_BYTES_MAX])]);
        assert!(ok.is_ok());
        let long_key = validate_batch(&[put(vec![1; KEY_BYTES_MAX + 1], Vec::new())]);
        assert!(matches!(
            long_key,
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let long_value = validate_batch(&[put(b"k".to_vec(), vec![0; VALUE_BYTES_MAX + 1])]);
        assert!(matches!(
            long_value,
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let many = vec![put(b"k".to_vec(), Vec::new()); WRITE_MUTATIONS_MAX + 1];
        assert!(validate_batch(&many).is_err());
        let heavy = vec![
            put(b"k".to_vec(), vec![0; VALUE_BYTES_MAX]);
            WRITE_BATCH_BYTES_MAX / VALUE_BYTES_MAX + 1
        ];
        assert!(validate_batch(&heavy).is_err());
    }
}
