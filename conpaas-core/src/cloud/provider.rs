//! The `Cloud` trait every driver implements, and the values crossing it.

use async_trait::async_trait;

/// What the director asks a cloud for: one manager VM. A driver's tests build one with
/// [`NodeRequest::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeRequest {
    /// VM name, `conpaas-manager-<type>-u<uid>-s<sid>` as in 1.2.
    pub name: String,
    /// The contextualisation script (user-data); contains the manager's private key.
    pub user_data: String,
    /// A token the cloud uses to make the create idempotent (EC2 ClientToken).
    pub client_token: String,
    /// Tags naming the director, user, application and service.
    pub tags: Vec<(String, String)>,
}

impl NodeRequest {
    /// A request for the VM `name` booting `user_data`, made idempotent by `client_token`;
    /// no tags.
    pub fn new(
        name: impl Into<String>,
        user_data: impl Into<String>,
        client_token: impl Into<String>,
    ) -> Self {
        NodeRequest {
            name: name.into(),
            user_data: user_data.into(),
            client_token: client_token.into(),
            tags: Vec::new(),
        }
    }

    /// Adds the tag `key` = `value` after those already set.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    setters! {
        name: into String,
        user_data: into String,
        client_token: into String,
        tags: Vec<(String, String)>,
    }
}

/// A VM the cloud created: what a driver's [`Cloud::create_node`] answers, built with
/// [`Node::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// The cloud's id of the VM (EC2 instance id, OpenNebula number, dummy id).
    pub vmid: String,
    /// Public address: what clients use to reach the manager.
    pub public_ip: String,
    /// Private address, when the cloud gives one.
    pub private_ip: Option<String>,
}

impl Node {
    /// The VM `vmid` at `public_ip`, and at `private_ip` when the cloud gives one.
    pub fn new(
        vmid: impl Into<String>,
        public_ip: impl Into<String>,
        private_ip: Option<String>,
    ) -> Self {
        Node {
            vmid: vmid.into(),
            public_ip: public_ip.into(),
            private_ip,
        }
    }
}

/// A VM as [`Cloud::list_nodes`] lists it: one this installation created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedNode {
    /// The cloud's id of the VM.
    pub vmid: String,
    /// The client token it was created with ([`NodeRequest::client_token`]).
    pub client_token: String,
    /// When the cloud created it, if the cloud says.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

impl ListedNode {
    /// A listed VM.
    pub fn new(
        vmid: impl Into<String>,
        client_token: impl Into<String>,
        created: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        ListedNode {
            vmid: vmid.into(),
            client_token: client_token.into(),
            created,
        }
    }
}

/// The state of a VM as far as the director cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// Being created or booting.
    Pending,
    /// Running with its addresses.
    Running,
    /// Stopped, terminated or failed: it will not serve.
    Gone,
}

/// A cloud operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cloud refused the request (bad image, quota...): retrying will not help.
    #[error("the cloud refused the request: {code}: {message}")]
    Refused {
        /// The cloud's error code.
        code: String,
        /// The cloud's message.
        message: String,
    },
    /// The cloud did not answer in time or answered with a server error, after retries.
    #[error("the cloud is unavailable: {0}")]
    Unavailable(String),
    /// The VM did not get its addresses before the boot timeout.
    #[error("the VM {vmid} was not ready after {seconds} s")]
    BootTimeout {
        /// The VM.
        vmid: String,
        /// The timeout.
        seconds: u64,
    },
    /// The VM ended in a failed state while booting.
    #[error("the VM {0} failed while booting")]
    Failed(String),
    /// A key of the cloud's section names something the cloud does not have or will not use
    /// (an image, template, flavor, network or subnet that does not exist): the operator must
    /// fix `key`. Retrying will not help. Drivers answer it from [`Cloud::probe`] (cpscheck
    /// prints it as one line) and from a create the cloud refuses for that reason.
    #[error("{key} of the cloud's section: {message}")]
    Misconfigured {
        /// The director.cfg key to fix (`SUBNET_ID`, `TEMPLATE_ID`, `SIZE_ID`...).
        key: String,
        /// What is wrong with its value, in one line.
        message: String,
    },
    /// Local IO (the dummy cloud's files).
    #[error("cloud io")]
    Io(#[from] std::io::Error),
    /// The driver cannot do this (e.g. list its VMs for the reaper).
    #[error("the {driver} driver cannot {operation}")]
    Unsupported {
        /// The driver.
        driver: &'static str,
        /// What it cannot do.
        operation: &'static str,
    },
    /// A driver's call failed in its own way, its cause kept whole (an SDK's error with its
    /// chain): what an embedder's driver answers when no other variant says it better
    /// ([`Error::driver`]). Treated as the cloud being unavailable.
    #[error("{message}")]
    Driver {
        /// What the driver was doing, for the log (`describing instances`).
        message: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// A [`Error::Driver`] error: `message` says what failed, `source` why.
    pub fn driver(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error::Driver {
            message: message.into(),
            source: source.into(),
        }
    }
}

/// A cloud the director starts manager VMs on.
#[async_trait]
pub trait Cloud: Send + Sync + std::fmt::Debug {
    /// The cloud's name: `iaas` for the default, otherwise its `OTHER_CLOUDS` section name.
    fn name(&self) -> &str;

    /// The driver type (`ec2`, `opennebula`, `dummy`): selects `scripts/cloud/<type>`.
    fn driver(&self) -> &'static str;

    /// Creates one VM and waits until it has its addresses. On any error after the VM was
    /// requested, the driver has already asked for its termination (no orphans).
    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error>;

    /// Terminates a VM. Terminating a VM the cloud no longer knows is a success.
    async fn kill_node(&self, vmid: &str) -> Result<(), Error>;

    /// The VM's state; a VM the cloud does not know is [`NodeState::Gone`].
    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error>;

    /// The VM created with `client_token` (see [`NodeRequest::client_token`]), if the cloud has
    /// one that is not terminated: how a start interrupted by a crash is found and undone
    /// (EC2: `DescribeInstances` filtered on `client-token`; OpenNebula: the token in the VM's
    /// name, found by listing `/compute`).
    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error>;

    /// Every VM not terminated whose client token starts with `token_prefix` (the prefix of
    /// this installation's tokens, `cps-<tag>-s`): what the reaper compares with the database
    /// to find VMs that outlived their row. Drivers that cannot list answer
    /// [`Error::Unsupported`] (the default), and the reaper skips their cloud: **a VM of such
    /// a cloud whose row is gone is never found** (a start whose terminate kept failing after
    /// a stop settled its row, a database restored from an older backup). Implement it for any
    /// cloud that costs money.
    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, Error> {
        let _ = token_prefix;
        Err(Error::Unsupported {
            driver: self.driver(),
            operation: "list its VMs",
        })
    }

    /// Cheap authenticated calls proving the endpoint answers, accepts the credentials and has
    /// what the section names (EC2: `DescribeInstances` with `MaxResults=5`, then the image,
    /// subnet and security groups; OpenNebula: the template or image and network; OpenStack:
    /// a token, the image, flavor and network). A wrong credential is [`Error::Refused`], a
    /// missing resource [`Error::Misconfigured`] naming its key. cpscheck runs it for every
    /// configured cloud and prints the error as one line.
    async fn probe(&self) -> Result<(), Error>;
}
