//! The keys of an `openstack` cloud section (`DRIVER = openstack`), typed: Keystone v3
//! credentials, the catalog's region and interface, and what a manager VM is made of.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use super::settings::DEFAULT_BOOT_TIMEOUT;

/// The keys of an OpenStack cloud section (docs/clouds.md "OpenStack").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenStackSettings {
    /// `AUTH_URL`: Keystone's v3 endpoint, normalised to end in `/v3` without a trailing
    /// slash (`https://keystone.example.org:5000/v3`).
    pub auth_url: String,
    /// How the driver gets its token: a user's password or an application credential.
    pub credential: OpenStackCredential,
    /// `REGION_NAME`: the region whose catalog endpoints are used; any region when absent.
    pub region_name: Option<String>,
    /// `INTERFACE`: which catalog endpoints are used (`public` by default).
    pub interface: OpenStackInterface,
    /// `IMAGE_ID`: the image, by name (looked up in Glance) or id.
    pub image: String,
    /// `SIZE_ID`: the flavor, by name or id.
    pub flavor: String,
    /// `NETWORK_ID`: the network the manager's port is on, by name or id; when absent, the
    /// one network the project sees that is not external.
    pub network: Option<String>,
    /// `SECURITY_GROUP_NAME`: a security group for the manager; the project's default group
    /// when absent.
    pub security_group_name: Option<String>,
    /// `KEY_NAME`: a Nova key pair injected into the manager.
    pub key_name: Option<String>,
    /// `FLOATING_IP_POOL`: the external network (name or id) a floating IP is allocated from
    /// for each manager; then that address is the manager's public one. None: the fixed
    /// address is used.
    pub floating_ip_pool: Option<String>,
    /// `BOOT_TIMEOUT` (ours): how long a new VM may take to be `ACTIVE` with its address.
    pub boot_timeout: Duration,
}

impl OpenStackSettings {
    /// The cloud whose Keystone is at `auth_url` (with or without `/v3`), reached with
    /// `credential`, starting managers from `image` (name or id) with `flavor` (name or
    /// id). The rest starts as: any region, the public interface, the project's only network,
    /// its default security group, no key pair, no floating IP, a boot timeout of 300 s.
    pub fn new(
        auth_url: impl AsRef<str>,
        credential: OpenStackCredential,
        image: impl Into<String>,
        flavor: impl Into<String>,
    ) -> Self {
        OpenStackSettings {
            auth_url: normalise_auth_url(auth_url.as_ref()),
            credential,
            region_name: None,
            interface: OpenStackInterface::Public,
            image: image.into(),
            flavor: flavor.into(),
            network: None,
            security_group_name: None,
            key_name: None,
            floating_ip_pool: None,
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
        }
    }

    setters! {
        credential: OpenStackCredential,
        region_name: some into String,
        interface: OpenStackInterface,
        image: into String,
        flavor: into String,
        network: some into String,
        security_group_name: some into String,
        key_name: some into String,
        floating_ip_pool: some into String,
        boot_timeout: Duration,
    }

    /// Sets [`auth_url`](Self::auth_url), normalised as [`OpenStackSettings::new`] does.
    pub fn auth_url(mut self, auth_url: impl AsRef<str>) -> Self {
        self.auth_url = normalise_auth_url(auth_url.as_ref());
        self
    }
}

/// `url` without trailing slashes, ending in `/v3` (added when absent): operators copy
/// `OS_AUTH_URL` from an openrc file, which has it or not.
pub(crate) fn normalise_auth_url(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    if trimmed.ends_with("/v3") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v3")
    }
}

/// How the driver authenticates to Keystone v3.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OpenStackCredential {
    /// `USER`, `PASSWORD`, a project and the domains: the `password` method, scoped to the
    /// project.
    Password(OpenStackPassword),
    /// `APPLICATION_CREDENTIAL_ID` and `APPLICATION_CREDENTIAL_SECRET`: the
    /// `application_credential` method (the credential carries its project).
    ApplicationCredential(OpenStackApplicationCredential),
}

/// A user's password, scoped to a project.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenStackPassword {
    /// `USER`: the user name.
    pub user: String,
    /// `PASSWORD`.
    pub password: SecretString,
    /// `USER_DOMAIN_NAME`: the user's domain (`Default` when absent).
    pub user_domain_name: String,
    /// `PROJECT_NAME` or `PROJECT_ID`.
    pub project: OpenStackProject,
    /// `PROJECT_DOMAIN_NAME`: the project's domain when it is named (`Default` when absent).
    pub project_domain_name: String,
}

impl OpenStackPassword {
    /// The domain both user and project are in when director.cfg names none.
    pub const DEFAULT_DOMAIN: &'static str = "Default";

    /// `user` with `password`, scoped to `project`; both in the `Default` domain.
    pub fn new(user: impl Into<String>, password: SecretString, project: OpenStackProject) -> Self {
        OpenStackPassword {
            user: user.into(),
            password,
            user_domain_name: Self::DEFAULT_DOMAIN.to_owned(),
            project,
            project_domain_name: Self::DEFAULT_DOMAIN.to_owned(),
        }
    }

    setters! {
        user: into String,
        password: SecretString,
        user_domain_name: into String,
        project: OpenStackProject,
        project_domain_name: into String,
    }
}

/// The project a password token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenStackProject {
    /// `PROJECT_NAME` (in `PROJECT_DOMAIN_NAME`).
    Name(String),
    /// `PROJECT_ID`.
    Id(String),
}

/// An application credential (Keystone's `application_credential` method).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenStackApplicationCredential {
    /// `APPLICATION_CREDENTIAL_ID`.
    pub id: String,
    /// `APPLICATION_CREDENTIAL_SECRET`.
    pub secret: SecretString,
}

impl OpenStackApplicationCredential {
    /// The credential `id` with its `secret`.
    pub fn new(id: impl Into<String>, secret: SecretString) -> Self {
        OpenStackApplicationCredential {
            id: id.into(),
            secret,
        }
    }
}

/// Which of a catalog entry's endpoints the driver calls (`INTERFACE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpenStackInterface {
    /// `public`: what a director outside the cloud reaches.
    Public,
    /// `internal`: a director inside the cloud's own network.
    Internal,
    /// `admin`.
    Admin,
}

impl OpenStackInterface {
    /// Every interface.
    pub const ALL: [OpenStackInterface; 3] = [
        OpenStackInterface::Public,
        OpenStackInterface::Internal,
        OpenStackInterface::Admin,
    ];

    /// The name in the catalog and in director.cfg.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenStackInterface::Public => "public",
            OpenStackInterface::Internal => "internal",
            OpenStackInterface::Admin => "admin",
        }
    }
}

impl fmt::Display for OpenStackInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_urls_end_in_v3() {
        for (given, expected) in [
            (
                "https://keystone.example.org:5000",
                "https://keystone.example.org:5000/v3",
            ),
            (
                "https://keystone.example.org:5000/",
                "https://keystone.example.org:5000/v3",
            ),
            (
                "https://keystone.example.org:5000/v3",
                "https://keystone.example.org:5000/v3",
            ),
            (
                "https://cloud.example.org/identity/v3/",
                "https://cloud.example.org/identity/v3",
            ),
        ] {
            assert_eq!(normalise_auth_url(given), expected, "{given}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let password = OpenStackSettings::new(
            "https://keystone.example.org:5000",
            OpenStackCredential::Password(OpenStackPassword::new(
                "alice",
                SecretString::from("pa55-word"),
                OpenStackProject::Name("conpaas".into()),
            )),
            "ubuntu",
            "m1.small",
        );
        let application = password
            .clone()
            .credential(OpenStackCredential::ApplicationCredential(
                OpenStackApplicationCredential::new("4d2c", SecretString::from("app-s3cret")),
            ));
        for settings in [password, application] {
            let debug = format!("{settings:?}");
            assert!(!debug.contains("pa55-word"), "{debug}");
            assert!(!debug.contains("app-s3cret"), "{debug}");
            assert!(debug.contains("m1.small"), "{debug}");
        }
    }
}
