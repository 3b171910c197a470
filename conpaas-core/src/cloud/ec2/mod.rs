//! The EC2 driver: manager VMs on Amazon EC2 (or any endpoint speaking the EC2 Query API, such
//! as moto in the tests) through a small SigV4 client of our own.
//!
//! A create is `RunInstances` with the service's `ClientToken` (so a retried create cannot make
//! a second VM), then `DescribeInstances` polls until the instance is `running` with its
//! address or `BOOT_TIMEOUT` passes. Whatever goes wrong once `RunInstances` has answered, the
//! driver terminates that instance before it returns the error, and it does so even when the
//! caller stops waiting: the create runs in a task of its own.

mod credentials;
mod query;
mod sigv4;
#[cfg(test)]
mod tests;
mod xml;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::provider::{Cloud, Error, ListedNode, Node, NodeRequest, NodeState};
use super::settings::{AddressPolicy, Ec2Settings};
use crate::model::ErrorChain;
pub use credentials::AwsEnvironment;
use query::{CallPolicy, QueryClient, Target};

/// The most user-data EC2 accepts: 16 KiB before base64.
pub const EC2_USER_DATA_LIMIT: usize = 16 * 1024;

/// Instance states from which a booting instance never becomes `running` by itself.
const TERMINAL_STATES: &[&str] = &["shutting-down", "terminated", "stopping", "stopped"];

/// States of an instance on its way out: nothing to undo or reap.
const ENDING_STATES: &[&str] = &["shutting-down", "terminated"];

/// The tag every start carries with the installation's tag (director/services.rs), which
/// [`Cloud::list_nodes`] filters on.
const DIRECTOR_TAG: &str = "ConPaaS-Director";

/// Instances per `DescribeInstances` page when listing (EC2 accepts 5 to 1000).
const LIST_PAGE_SIZE: u32 = 1000;

/// How long the credential chain waits for IMDS (the AWS SDKs wait 1 s; off EC2 nothing
/// answers, and a start must not hang on it).
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);

/// Error codes meaning "there is no such instance" (or no such id could exist).
const NOT_FOUND_CODES: &[&str] = &["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"];

/// The driver's timings and limits; [`Ec2Tuning::recommended`] is what `director.cfg` clouds
/// get (the tests shorten them).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ec2Tuning {
    /// The pause between two `DescribeInstances` while an instance boots.
    pub poll_interval: Duration,
    /// The longest wait for a TCP (and TLS) connection to the endpoint.
    pub connect_timeout: Duration,
    /// The longest wait for one whole call, answer included.
    pub request_timeout: Duration,
    /// Attempts per call (at least 1) when EC2 throttles, fails with a 5xx, times out or
    /// cannot be reached.
    pub max_attempts: u32,
    /// The first pause between attempts; it doubles with each retry.
    pub backoff_base: Duration,
    /// The longest pause between attempts.
    pub backoff_max: Duration,
    /// What AWS's credential chain reads when the section has no `USER`/`PASSWORD`; `None`:
    /// the process's own ([`AwsEnvironment::from_process`]), read when the cloud is built.
    pub environment: Option<AwsEnvironment>,
}

impl Ec2Tuning {
    /// 2 s polls, 5 s to connect, 30 s per call, 5 attempts with backoff from 0.5 s up to
    /// 8 s.
    pub fn recommended() -> Ec2Tuning {
        Ec2Tuning {
            poll_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            environment: None,
        }
    }

    setters! {
        poll_interval: Duration,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_attempts: u32,
        backoff_base: Duration,
        backoff_max: Duration,
        environment: some AwsEnvironment,
    }
}

/// An EC2 cloud: one `[iaas]` or `OTHER_CLOUDS` section with `DRIVER = ec2`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ec2Cloud {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    settings: Ec2Settings,
    tuning: Ec2Tuning,
    client: QueryClient,
}

impl Ec2Cloud {
    /// The cloud `name` with `settings` and [`Ec2Tuning::recommended`]. Fails only when the
    /// HTTP client cannot be built (no trusted root certificates for an HTTPS endpoint).
    pub fn new(name: impl Into<String>, settings: Ec2Settings) -> Result<Ec2Cloud, Error> {
        Ec2Cloud::with_tuning(name, settings, Ec2Tuning::recommended())
    }

    /// The cloud `name` with `settings` and its own timings.
    pub fn with_tuning(
        name: impl Into<String>,
        settings: Ec2Settings,
        tuning: Ec2Tuning,
    ) -> Result<Ec2Cloud, Error> {
        let target = Target::new(
            settings.endpoint.as_ref(),
            &settings.region.endpoint_host,
            &settings.region.name,
        );
        let environment = tuning
            .environment
            .clone()
            .unwrap_or_else(AwsEnvironment::from_process);
        let credentials =
            credentials::Provider::new(&settings.credentials, environment, IMDS_TIMEOUT)?;
        let client = QueryClient::new(
            target,
            credentials,
            CallPolicy {
                connect_timeout: tuning.connect_timeout,
                request_timeout: tuning.request_timeout,
                max_attempts: tuning.max_attempts,
                backoff_base: tuning.backoff_base,
                backoff_max: tuning.backoff_max,
            },
        )?;
        Ok(Ec2Cloud {
            inner: Arc::new(Inner {
                name: name.into(),
                settings,
                tuning,
                client,
            }),
        })
    }

    /// The section's settings.
    pub fn settings(&self) -> &Ec2Settings {
        &self.inner.settings
    }

    /// The driver's timings.
    pub fn tuning(&self) -> &Ec2Tuning {
        &self.inner.tuning
    }

    /// The create, start to end; the caller (`create_node`) waits on `waiter`'s other end.
    async fn launch(
        &self,
        request: NodeRequest,
        waiter: &mut oneshot::Sender<Result<Node, Error>>,
    ) -> Result<Node, Error> {
        if request.user_data.len() > EC2_USER_DATA_LIMIT {
            return Err(Error::Refused {
                code: "UserDataTooLarge".into(),
                message: format!(
                    "the context script is {} bytes; EC2 accepts at most {EC2_USER_DATA_LIMIT}",
                    request.user_data.len()
                ),
            });
        }
        let instance = match self.run_instance(&request).await {
            Ok(instance) => instance,
            Err(error @ Error::Unavailable(_)) => {
                // A request may have reached EC2 with only its answer lost; the director
                // deletes the service row on this error, so nothing else would find it.
                self.terminate_by_token(&request).await;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let vmid = instance.id.clone();
        tracing::info!(cloud = %self.inner.name, %vmid, name = %request.name, state = %instance.state, "EC2 instance requested");
        match self.wait_ready(instance, waiter).await {
            Ok(node) => {
                tracing::info!(cloud = %self.inner.name, %vmid, ip = %node.public_ip, "EC2 instance ready");
                Ok(node)
            }
            Err(error) => {
                tracing::warn!(cloud = %self.inner.name, %vmid, error = %ErrorChain(&error), "EC2 instance did not become ready: terminating it");
                self.terminate_own(&vmid).await;
                Err(error)
            }
        }
    }

    /// `RunInstances` of one instance. Retried like any call: the `ClientToken` makes EC2
    /// answer a repeated request with the instance the first one created.
    async fn run_instance(&self, request: &NodeRequest) -> Result<xml::Instance, Error> {
        let settings = &self.inner.settings;
        let mut params: Vec<(String, String)> = vec![
            ("ImageId".into(), settings.image_id.clone()),
            ("InstanceType".into(), settings.size_id.clone()),
            ("KeyName".into(), settings.key_name.clone()),
            ("MinCount".into(), "1".into()),
            ("MaxCount".into(), "1".into()),
            (
                "UserData".into(),
                base64::engine::general_purpose::STANDARD.encode(&request.user_data),
            ),
            ("ClientToken".into(), request.client_token.clone()),
            (
                "MetadataOptions.HttpTokens".into(),
                settings.metadata_tokens.as_str().into(),
            ),
            ("MetadataOptions.HttpEndpoint".into(), "enabled".into()),
            ("TagSpecification.1.ResourceType".into(), "instance".into()),
        ];
        // Ids when given (a VPC subnet needs them); else 1.2's group name.
        if settings.security_group_ids.is_empty() {
            if let Some(name) = &settings.security_group_name {
                params.push(("SecurityGroup.1".into(), name.clone()));
            }
        } else {
            for (index, id) in settings.security_group_ids.iter().enumerate() {
                params.push((format!("SecurityGroupId.{}", index + 1), id.clone()));
            }
        }
        if let Some(subnet) = &settings.subnet_id {
            params.push(("SubnetId".into(), subnet.clone()));
        }
        let tags = std::iter::once(("Name", request.name.as_str())).chain(
            request
                .tags
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        for (index, (key, value)) in tags.enumerate() {
            let n = index + 1;
            params.push((format!("TagSpecification.1.Tag.{n}.Key"), key.to_owned()));
            params.push((
                format!("TagSpecification.1.Tag.{n}.Value"),
                value.to_owned(),
            ));
        }
        self.inner
            .client
            .call("RunInstances", &params, |text| {
                xml::instances(text)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| "no instance in the RunInstances answer".to_owned())
            })
            .await
    }

    /// The node, if `instance` is running with the address the policy wants.
    fn ready(&self, instance: &xml::Instance) -> Option<Node> {
        if instance.state != "running" {
            return None;
        }
        let address = match self.inner.settings.address {
            AddressPolicy::Public => instance.public_ip.clone(),
            AddressPolicy::PublicOrPrivate => instance
                .public_ip
                .clone()
                .or_else(|| instance.private_ip.clone()),
        }?;
        Some(Node::new(
            instance.id.clone(),
            address,
            instance.private_ip.clone(),
        ))
    }

    /// Polls until the instance is ready, has failed, or `BOOT_TIMEOUT` (counted from the
    /// `RunInstances` answer) has passed; gives up early when the caller stops waiting.
    async fn wait_ready(
        &self,
        instance: xml::Instance,
        waiter: &mut oneshot::Sender<Result<Node, Error>>,
    ) -> Result<Node, Error> {
        if let Some(node) = self.ready(&instance) {
            return Ok(node);
        }
        let vmid = instance.id;
        let boot_timeout = self.inner.settings.boot_timeout;
        let deadline = Instant::now() + boot_timeout;
        loop {
            // Checked before each poll, never after the last pause: the deadline is a promise
            // to the caller, not a hint.
            if Instant::now() >= deadline {
                return Err(Error::BootTimeout {
                    vmid,
                    seconds: boot_timeout.as_secs(),
                });
            }
            match self.describe(&vmid).await? {
                Some(instance) => {
                    if let Some(node) = self.ready(&instance) {
                        return Ok(node);
                    }
                    if TERMINAL_STATES.contains(&instance.state.as_str()) {
                        tracing::warn!(cloud = %self.inner.name, %vmid, state = %instance.state, reason = ?instance.state_reason, "EC2 instance failed while booting");
                        return Err(Error::Failed(vmid));
                    }
                }
                // EC2 is eventually consistent: a new instance may be unknown for a moment.
                None => tracing::debug!(%vmid, "EC2 instance not visible yet"),
            }
            let pause = self
                .inner
                .tuning
                .poll_interval
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = waiter.closed() => {
                    return Err(Error::Unavailable(
                        "the caller stopped waiting for the instance".into(),
                    ));
                }
            }
        }
    }

    /// `DescribeInstances` of one instance; `None` when EC2 does not know it.
    async fn describe(&self, vmid: &str) -> Result<Option<xml::Instance>, Error> {
        let params = [("InstanceId.1".to_owned(), vmid.to_owned())];
        match self
            .inner
            .client
            .call("DescribeInstances", &params, xml::instances)
            .await
        {
            Ok(instances) => Ok(instances.into_iter().find(|instance| instance.id == vmid)),
            Err(Error::Refused { code, .. }) if NOT_FOUND_CODES.contains(&code.as_str()) => {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// `TerminateInstances` of one instance; `Ok(false)` when EC2 does not know it.
    async fn terminate(&self, vmid: &str) -> Result<bool, Error> {
        let params = [("InstanceId.1".to_owned(), vmid.to_owned())];
        match self
            .inner
            .client
            .call("TerminateInstances", &params, |_| Ok(()))
            .await
        {
            Ok(()) => Ok(true),
            Err(Error::Refused { code, .. }) if NOT_FOUND_CODES.contains(&code.as_str()) => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Terminates the instance a failed `RunInstances` may have created, found by its client
    /// token; best effort (EC2 is likely still unreachable), failures logged.
    async fn terminate_by_token(&self, request: &NodeRequest) {
        match self.find_node(&request.client_token).await {
            Ok(Some(vmid)) => {
                tracing::warn!(cloud = %self.inner.name, %vmid, "RunInstances failed but made an instance: terminating it");
                self.terminate_own(&vmid).await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(cloud = %self.inner.name, name = %request.name, client_token = %request.client_token, error = %ErrorChain(&error), "cannot check whether the failed RunInstances made an instance: check for an orphan");
            }
        }
    }

    /// Terminates an instance this driver just created. Unlike [`Cloud::kill_node`], "not
    /// found" is not taken for "gone": right after `RunInstances`, EC2 may not list the
    /// instance yet, so it is asked again (every poll interval, as many times as a call is
    /// attempted). Failures are logged: the caller already has an error to return.
    async fn terminate_own(&self, vmid: &str) {
        let attempts = self.inner.tuning.max_attempts.max(1);
        for attempt in 1..=attempts {
            match self.terminate(vmid).await {
                Ok(true) => {
                    tracing::info!(cloud = %self.inner.name, %vmid, "EC2 instance terminated");
                    return;
                }
                Ok(false) if attempt < attempts => {
                    tokio::time::sleep(self.inner.tuning.poll_interval).await;
                }
                Ok(false) => {
                    tracing::warn!(cloud = %self.inner.name, %vmid, "EC2 still does not know the instance it created: check for an orphan tagged with this name");
                }
                Err(error) => {
                    tracing::warn!(cloud = %self.inner.name, %vmid, error = %ErrorChain(&error), "cannot terminate the EC2 instance: check for an orphan");
                    return;
                }
            }
        }
    }
}

impl Ec2Cloud {
    /// Whether the image, subnet, security groups and key pair the section names exist in the
    /// region: the first that does not is [`Error::Misconfigured`] with its key.
    async fn check_resources(&self) -> Result<(), Error> {
        let settings = &self.inner.settings;
        let image = settings.image_id.clone();
        self.expect_found(
            "DescribeImages",
            vec![("ImageId.1".to_owned(), image.clone())],
            "imagesSet",
            &[
                "InvalidAMIID.NotFound",
                "InvalidAMIID.Malformed",
                "InvalidAMIID.Unavailable",
            ],
            "IMAGE_ID",
            format!(
                "the AMI {image} does not exist in {} (or is not shared with this account)",
                settings.region.name
            ),
        )
        .await?;
        if let Some(subnet) = &settings.subnet_id {
            self.expect_found(
                "DescribeSubnets",
                vec![("SubnetId.1".to_owned(), subnet.clone())],
                "subnetSet",
                &["InvalidSubnetID.NotFound", "InvalidSubnetID.Malformed"],
                "SUBNET_ID",
                format!(
                    "the subnet {subnet} does not exist in {}",
                    settings.region.name
                ),
            )
            .await?;
        }
        if settings.security_group_ids.is_empty() {
            if let Some(name) = &settings.security_group_name {
                self.expect_found(
                    "DescribeSecurityGroups",
                    vec![("GroupName.1".to_owned(), name.clone())],
                    "securityGroupInfo",
                    &["InvalidGroup.NotFound", "InvalidParameterValue"],
                    "SECURITY_GROUP_NAME",
                    format!(
                        "no security group named {name} in the default VPC of {} (name groups \
                         of another VPC by id in SECURITY_GROUP_IDS)",
                        settings.region.name
                    ),
                )
                .await?;
            }
        } else {
            let params = settings
                .security_group_ids
                .iter()
                .enumerate()
                .map(|(index, id)| (format!("GroupId.{}", index + 1), id.clone()))
                .collect();
            self.expect_found(
                "DescribeSecurityGroups",
                params,
                "securityGroupInfo",
                &["InvalidGroup.NotFound", "InvalidGroupId.Malformed"],
                "SECURITY_GROUP_IDS",
                format!(
                    "a security group of {} does not exist in {}",
                    settings.security_group_ids.join(","),
                    settings.region.name
                ),
            )
            .await?;
        }
        let key = settings.key_name.clone();
        self.expect_found(
            "DescribeKeyPairs",
            vec![("KeyName.1".to_owned(), key.clone())],
            "keySet",
            &["InvalidKeyPair.NotFound"],
            "KEY_NAME",
            format!(
                "the key pair {key} does not exist in {}",
                settings.region.name
            ),
        )
        .await
    }

    /// Calls `action`, which must answer at least one item in its `set` element; a
    /// not-found code or an empty set is [`Error::Misconfigured`] of `key`.
    async fn expect_found(
        &self,
        action: &str,
        params: Vec<(String, String)>,
        set: &'static str,
        not_found: &[&str],
        key: &str,
        message: String,
    ) -> Result<(), Error> {
        let misconfigured = || Error::Misconfigured {
            key: key.to_owned(),
            message: message.clone(),
        };
        match self
            .inner
            .client
            .call(action, &params, |text| xml::set_has_items(text, set))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(misconfigured()),
            Err(Error::Refused { code, .. }) if not_found.contains(&code.as_str()) => {
                Err(misconfigured())
            }
            Err(error) => Err(error),
        }
    }
}

/// The installation tag inside a token prefix of the director's form `cps-<tag>-…` (the
/// reaper passes `cps-<tag>-s`), which is the value of the instances' `ConPaaS-Director`
/// tag; `None` for any other prefix.
fn installation_tag(token_prefix: &str) -> Option<&str> {
    let (tag, _) = token_prefix.strip_prefix("cps-")?.split_once('-')?;
    (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(tag)
}

#[async_trait]
impl Cloud for Ec2Cloud {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn driver(&self) -> &'static str {
        "ec2"
    }

    async fn create_node(&self, request: NodeRequest) -> Result<Node, Error> {
        // The create runs in its own task so that a caller that gives up (a timeout, a client
        // that hangs up) cannot interrupt the cleanup: the task sees the waiter gone and
        // terminates the instance, whether it was still booting or already ready.
        let cloud = self.clone();
        let (answer, answered) = oneshot::channel();
        tokio::spawn(async move {
            let mut answer = answer;
            let outcome = cloud.launch(request, &mut answer).await;
            if let Err(Ok(node)) = answer.send(outcome) {
                tracing::warn!(cloud = %cloud.inner.name, vmid = %node.vmid, "nobody waits for the ready EC2 instance any more: terminating it");
                cloud.terminate_own(&node.vmid).await;
            }
        });
        answered
            .await
            .map_err(|_| Error::Unavailable("the EC2 create task ended without an answer".into()))?
    }

    async fn kill_node(&self, vmid: &str) -> Result<(), Error> {
        if self.terminate(vmid).await? {
            tracing::info!(cloud = %self.inner.name, %vmid, "EC2 instance terminated");
        } else {
            tracing::info!(cloud = %self.inner.name, %vmid, "EC2 does not know the instance: already gone");
        }
        Ok(())
    }

    async fn node_state(&self, vmid: &str) -> Result<NodeState, Error> {
        Ok(match self.describe(vmid).await? {
            None => NodeState::Gone,
            Some(instance) => match instance.state.as_str() {
                "pending" => NodeState::Pending,
                "running" => NodeState::Running,
                _ => NodeState::Gone,
            },
        })
    }

    async fn find_node(&self, client_token: &str) -> Result<Option<String>, Error> {
        if client_token.is_empty() {
            return Ok(None);
        }
        let params = [
            ("Filter.1.Name".to_owned(), "client-token".to_owned()),
            ("Filter.1.Value.1".to_owned(), client_token.to_owned()),
        ];
        let instances = self
            .inner
            .client
            .call("DescribeInstances", &params, xml::instances)
            .await?;
        // The filter is a request, not a guarantee: an EC2-compatible endpoint that ignores
        // unknown filters answers every instance, and this answer decides what gets
        // terminated. Only an instance the answer ties to our token is ours. An instance
        // already on its way out needs no undoing; a stopped one still costs its volumes.
        Ok(instances
            .into_iter()
            .filter(|instance| {
                let ours = instance.client_token.as_deref() == Some(client_token);
                if !ours {
                    tracing::debug!(cloud = %self.inner.name, vmid = %instance.id, client_token = ?instance.client_token, "DescribeInstances answered an instance of another token: ignored");
                }
                ours
            })
            .find(|instance| !ENDING_STATES.contains(&instance.state.as_str()))
            .map(|instance| instance.id))
    }

    async fn list_nodes(&self, token_prefix: &str) -> Result<Vec<ListedNode>, Error> {
        if token_prefix.is_empty() {
            // An empty prefix would claim every instance of the account.
            return Ok(Vec::new());
        }
        let mut params = vec![
            ("MaxResults".to_owned(), LIST_PAGE_SIZE.to_string()),
            ("Filter.1.Name".to_owned(), "instance-state-name".to_owned()),
        ];
        for (n, state) in ["pending", "running", "stopping", "stopped"]
            .iter()
            .enumerate()
        {
            params.push((format!("Filter.1.Value.{}", n + 1), (*state).to_owned()));
        }
        params.extend(match installation_tag(token_prefix) {
            Some(tag) => [
                ("Filter.2.Name".to_owned(), format!("tag:{DIRECTOR_TAG}")),
                ("Filter.2.Value.1".to_owned(), tag.to_owned()),
            ],
            None => [
                ("Filter.2.Name".to_owned(), "tag-key".to_owned()),
                ("Filter.2.Value.1".to_owned(), DIRECTOR_TAG.to_owned()),
            ],
        });
        let mut listed = Vec::new();
        let mut next_token: Option<String> = None;
        let mut seen_tokens = std::collections::HashSet::new();
        loop {
            let mut page_params = params.clone();
            if let Some(token) = &next_token {
                page_params.push(("NextToken".to_owned(), token.clone()));
            }
            let page = self
                .inner
                .client
                .call("DescribeInstances", &page_params, xml::page)
                .await?;
            // As in find_node, the filters are not trusted: the token and the state decide.
            for instance in page.instances {
                let Some(token) = instance.client_token else {
                    continue;
                };
                if !token.starts_with(token_prefix)
                    || ENDING_STATES.contains(&instance.state.as_str())
                {
                    continue;
                }
                let created = instance
                    .launch_time
                    .as_deref()
                    .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())
                    .map(|time| time.with_timezone(&chrono::Utc));
                listed.push(ListedNode::new(instance.id, token, created));
            }
            match page.next_token {
                // A server repeating a token would otherwise keep this loop going forever.
                Some(token) if !seen_tokens.insert(token.clone()) => {
                    return Err(Error::Unavailable(format!(
                        "EC2 DescribeInstances answered the nextToken {token:?} twice"
                    )));
                }
                Some(token) => next_token = Some(token),
                None => break,
            }
        }
        listed.sort_by(|a, b| a.vmid.cmp(&b.vmid));
        listed.dedup_by(|a, b| a.vmid == b.vmid);
        Ok(listed)
    }

    async fn probe(&self) -> Result<(), Error> {
        let params = [("MaxResults".to_owned(), "5".to_owned())];
        self.inner
            .client
            .call("DescribeInstances", &params, |text| {
                xml::instances(text).map(|_| ())
            })
            .await?;
        self.check_resources().await
    }
}
