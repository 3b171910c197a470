//! The dummy cloud: no network; each "VM" is a file holding its user-data, so operators and
//! tests can read the context script (and the manager certificate in it).

use std::path::PathBuf;

use async_trait::async_trait;

use super::provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};

/// The manager address of every dummy VM, as in 1.2 (its unit tests assert it).
pub const DUMMY_MANAGER_IP: &str = "127.0.0.3";

/// A cloud whose VMs are files `<dir>/<vmid>.sh`.
#[derive(Debug, Clone)]
pub struct DummyCloud {
    name: String,
    dir: PathBuf,
}

impl DummyCloud {
    /// A dummy cloud named `name` keeping its VMs in `dir` (created when needed).
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        DummyCloud {
            name: name.into(),
            dir: dir.into(),
        }
    }

    /// Where the user-data of VM `vmid` is kept.
    pub fn user_data_path(&self, vmid: &str) -> PathBuf {
        self.dir.join(format!("{vmid}.sh"))
    }

    fn valid_vmid(vmid: &str) -> bool {
        !vmid.is_empty() && vmid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }
}

#[async_trait]
impl Cloud for DummyCloud {
    fn name(&self) -> &str {
        &self.name
    }

    fn driver(&self) -> &'static str {
        "dummy"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        // The client token is unique per service start: it names the VM, so a retried create
        // finds the same file instead of making a second VM.
        let vmid = request.client_token.clone();
        if !Self::valid_vmid(&vmid) {
            return Err(Error::Refused {
                code: "InvalidClientToken".into(),
                message: "client token must be alphanumeric".into(),
            });
        }
        let dir = self.dir.clone();
        let path = self.user_data_path(&vmid);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            // The user-data holds the manager's private key: 0600 from creation.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(request.user_data.as_bytes())
        })
        .await
        .map_err(|join| Error::Unavailable(join.to_string()))??;
        Ok(Node::new(
            vmid,
            DUMMY_MANAGER_IP,
            Some(DUMMY_MANAGER_IP.to_owned()),
        ))
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        if !Self::valid_vmid(vmid) {
            return Ok(());
        }
        match tokio::fs::remove_file(self.user_data_path(vmid)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::Io(error)),
        }
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        // A dummy VM's id is its token.
        match self.node_state(client_token).await? {
            NodeState::Gone => Ok(None),
            _ => Ok(Some(client_token.to_owned())),
        }
    }

    async fn probe(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, Error> {
        let dir = self.dir.clone();
        let prefix = token_prefix.to_owned();
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<ListedNode>> {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(error) => return Err(error),
            };
            let mut nodes = Vec::new();
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                let Some(vmid) = name.to_str().and_then(|name| name.strip_suffix(".sh")) else {
                    continue;
                };
                if !vmid.starts_with(&prefix) || !Self::valid_vmid(vmid) {
                    continue;
                }
                let created = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .ok()
                    .map(chrono::DateTime::<chrono::Utc>::from);
                // A dummy VM's id is its token.
                nodes.push(ListedNode::new(vmid, vmid, created));
            }
            nodes.sort_by(|a, b| a.vmid.cmp(&b.vmid));
            Ok(nodes)
        })
        .await
        .map_err(|join| Error::Unavailable(join.to_string()))?
        .map_err(Error::Io)
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        if Self::valid_vmid(vmid) && tokio::fs::try_exists(self.user_data_path(vmid)).await? {
            Ok(NodeState::Running)
        } else {
            Ok(NodeState::Gone)
        }
    }
}
