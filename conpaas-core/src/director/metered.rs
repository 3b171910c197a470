//! Every cloud of a director behind a timer: each call's latency and failure counted by cloud
//! and call, whoever's driver it is (built-in or an embedder's).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::metrics::{CloudCall, Metrics};
use crate::cloud::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};

/// A cloud whose calls are timed into [`Metrics`].
#[derive(Debug)]
pub(super) struct MeteredCloud {
    inner: Arc<dyn Cloud>,
    /// The name the registry knows it by (the metric's `cloud` label).
    registered: String,
    metrics: Arc<Metrics>,
}

impl MeteredCloud {
    pub(super) fn wrap(
        registered: &str,
        inner: Arc<dyn Cloud>,
        metrics: Arc<Metrics>,
    ) -> Arc<dyn Cloud> {
        Arc::new(MeteredCloud {
            inner,
            registered: registered.to_owned(),
            metrics,
        })
    }

    async fn timed<T>(
        &self,
        call: CloudCall,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = work.await;
        // A driver that cannot list its VMs did not fail: it never tried.
        let failed = matches!(&result, Err(error) if !matches!(error, Error::Unsupported { .. }));
        self.metrics
            .cloud_call(&self.registered, call, started.elapsed(), failed);
        result
    }
}

#[async_trait]
impl Cloud for MeteredCloud {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn driver(&self) -> &'static str {
        self.inner.driver()
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        self.timed(CloudCall::CreateNode, self.inner.create_node(request))
            .await
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        self.timed(CloudCall::KillNode, self.inner.kill_node(vmid))
            .await
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        self.timed(CloudCall::NodeState, self.inner.node_state(vmid))
            .await
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        self.timed(CloudCall::FindNode, self.inner.find_node(client_token))
            .await
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, Error> {
        self.timed(CloudCall::ListNodes, self.inner.list_nodes(token_prefix))
            .await
    }

    async fn probe(&self) -> Result<(), Error> {
        self.timed(CloudCall::Probe, self.inner.probe()).await
    }
}
