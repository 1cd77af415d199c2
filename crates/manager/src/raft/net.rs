//! openraft's network: Raft messages to other managers as calls over the cluster's mutual-TLS
//! transport (`/v1/raft/{append,vote,snapshot}`); the answer is the remote `Raft` handler's
//! whole `Result`.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use skiff_cluster::transport::{CallError, Dialer};

use super::{Member, TypeConfig};

/// Makes a client per target manager; all share one dialer (and its connections).
#[derive(Debug, Clone)]
pub struct Network {
    pub dialer: Dialer,
}

/// The client for one target.
#[derive(Debug)]
pub struct Peer {
    dialer: Dialer,
    target: u64,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        Peer { dialer: self.dialer.clone(), target, addr: node.addr.clone() }
    }
}

type RpcErr<E> = RPCError<u64, Member, RaftError<u64, E>>;

impl Peer {
    async fn send<Req, Resp, E>(&self, path: &str, req: &Req, option: &RPCOption) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl().max(Duration::from_millis(100));
        let answer: Result<Result<Resp, RaftError<u64, E>>, CallError> =
            self.dialer.call(&self.addr, path, req, timeout).await;
        match answer {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e @ CallError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.to_string()))))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.send("/v1/raft/append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcErr<InstallSnapshotError>> {
        self.send("/v1/raft/snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcErr<openraft::error::Infallible>> {
        self.send("/v1/raft/vote", &rpc, &option).await
    }
}
