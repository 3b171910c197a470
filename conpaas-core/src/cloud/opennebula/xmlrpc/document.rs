//! OpenNebula's documents as the driver reads them (`vm.xsd`, `vm_pool.xsd`,
//! `vmtemplate.xsd`) and the VM templates it writes.
//!
//! Templates are sent as XML (`<TEMPLATE>…</TEMPLATE>`), which oned reads as it reads the
//! text syntax (`Template::parse_str_or_xml`, 4.x on): XML escaping is exact, where the text
//! syntax's quoting rules changed between releases.

use chrono::{DateTime, Utc};

use super::rpc::escape;
use crate::cloud::NodeState;

/// `VM/STATE` values (`VirtualMachine::VmState`).
pub(super) mod state {
    pub(crate) const INIT: u32 = 0;
    pub(crate) const PENDING: u32 = 1;
    pub(crate) const HOLD: u32 = 2;
    pub(crate) const ACTIVE: u32 = 3;
    pub(crate) const STOPPED: u32 = 4;
    pub(crate) const SUSPENDED: u32 = 5;
    pub(crate) const DONE: u32 = 6;
    /// Before 4.x; kept for documents of old VMs.
    pub(crate) const FAILED: u32 = 7;
    pub(crate) const POWEROFF: u32 = 8;
    pub(crate) const UNDEPLOYED: u32 = 9;
    pub(crate) const CLONING: u32 = 10;
    pub(crate) const CLONING_FAILURE: u32 = 11;
}

/// `VM/LCM_STATE` values (`VirtualMachine::LcmState`) the driver tells apart.
pub(super) mod lcm {
    pub(crate) const RUNNING: u32 = 3;
    pub(crate) const EPILOG_STOP: u32 = 10;
    pub(crate) const EPILOG: u32 = 11;
    pub(crate) const SHUTDOWN: u32 = 12;
    /// Before 5.x.
    pub(crate) const CANCEL: u32 = 13;
    /// Before 4.x.
    pub(crate) const FAILURE: u32 = 14;
    pub(crate) const CLEANUP_RESUBMIT: u32 = 15;
    pub(crate) const UNKNOWN: u32 = 16;
    pub(crate) const SHUTDOWN_POWEROFF: u32 = 18;
    pub(crate) const CLEANUP_DELETE: u32 = 23;
    pub(crate) const SHUTDOWN_UNDEPLOY: u32 = 29;
    pub(crate) const EPILOG_UNDEPLOY: u32 = 30;
    pub(crate) const BOOT_FAILURE: u32 = 36;
    pub(crate) const PROLOG_FAILURE: u32 = 39;
    /// Every `*_FAILURE` state (5.x-7.x): the VM will not run without an operator.
    pub(crate) const FAILURES: [u32; 15] = [
        FAILURE, 36, 37, 38, 39, 40, 41, 42, 44, 46, 47, 48, 49, 50, 61,
    ];
    /// The states of a VM being shut down or deleted.
    pub(crate) const ENDING: [u32; 9] = [
        EPILOG_STOP,
        EPILOG,
        SHUTDOWN,
        CANCEL,
        CLEANUP_RESUBMIT,
        SHUTDOWN_POWEROFF,
        CLEANUP_DELETE,
        SHUTDOWN_UNDEPLOY,
        EPILOG_UNDEPLOY,
    ];
}

/// A VM as `one.vm.info` (the whole document) or `one.vmpool.info` (the short one of 5.8+,
/// whose `USER_TEMPLATE` keeps only `LABELS` and the scheduler's attributes) shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Vm {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) state: u32,
    pub(super) lcm_state: u32,
    /// `TEMPLATE/NIC/IP` of the first NIC that has one.
    pub(super) ip: Option<String>,
    /// `STIME`.
    pub(super) created: Option<DateTime<Utc>>,
    /// `USER_TEMPLATE/CONPAAS_CLIENT_TOKEN` (whole documents only).
    pub(super) token: Option<String>,
    /// `USER_TEMPLATE/LABELS`.
    pub(super) labels: Option<String>,
}

impl Vm {
    /// Whether the VM is `ACTIVE`/`RUNNING`.
    pub(super) fn is_running(&self) -> bool {
        self.state == state::ACTIVE && self.lcm_state == lcm::RUNNING
    }

    /// Whether the VM failed (a `*_FAILURE` state, or the `FAILED`/`CLONING_FAILURE` states).
    pub(super) fn is_failed(&self) -> bool {
        matches!(self.state, state::FAILED | state::CLONING_FAILURE)
            || (self.state == state::ACTIVE && lcm::FAILURES.contains(&self.lcm_state))
    }

    /// Whether the VM is `DONE` or on its way there (shutting down, its epilog, cleaning up):
    /// a terminate already reached it.
    pub(super) fn is_ending(&self) -> bool {
        self.state == state::DONE
            || (self.state == state::ACTIVE && lcm::ENDING.contains(&self.lcm_state))
    }

    /// The state as the director sees it: running, on its way (pending, booting, paused by
    /// an operator, a host not answering), or gone (done, failed, shutting down, stopped or
    /// undeployed).
    pub(super) fn node_state(&self) -> NodeState {
        if self.is_running() {
            NodeState::Running
        } else if self.is_failed()
            || self.is_ending()
            || matches!(self.state, state::STOPPED | state::UNDEPLOYED)
        {
            NodeState::Gone
        } else {
            // INIT, PENDING, HOLD, CLONING, ACTIVE while deploying or with its host UNKNOWN,
            // SUSPENDED and POWEROFF (an operator may resume them), any state not known here.
            NodeState::Pending
        }
    }

    /// `STATE/LCM_STATE` for messages.
    pub(super) fn state_text(&self) -> String {
        let name = match self.state {
            state::INIT => "INIT",
            state::PENDING => "PENDING",
            state::HOLD => "HOLD",
            state::ACTIVE => "ACTIVE",
            state::STOPPED => "STOPPED",
            state::SUSPENDED => "SUSPENDED",
            state::DONE => "DONE",
            state::FAILED => "FAILED",
            state::POWEROFF => "POWEROFF",
            state::UNDEPLOYED => "UNDEPLOYED",
            state::CLONING => "CLONING",
            state::CLONING_FAILURE => "CLONING_FAILURE",
            _ => "STATE",
        };
        if self.state == state::ACTIVE {
            let lcm_name = match self.lcm_state {
                1 => "PROLOG",
                2 => "BOOT",
                lcm::RUNNING => "RUNNING",
                lcm::EPILOG => "EPILOG",
                lcm::SHUTDOWN => "SHUTDOWN",
                lcm::UNKNOWN => "UNKNOWN",
                lcm::BOOT_FAILURE => "BOOT_FAILURE",
                lcm::PROLOG_FAILURE => "PROLOG_FAILURE",
                _ => "",
            };
            if lcm_name.is_empty() {
                format!("{name}/LCM_STATE {}", self.lcm_state)
            } else {
                format!("{name}/{lcm_name}")
            }
        } else if name == "STATE" {
            format!("STATE {}", self.state)
        } else {
            name.to_owned()
        }
    }
}

/// A document the driver cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct ParseError(String);

fn element_children<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|child| child.is_element())
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    element_children(node).find(|child| child.tag_name().name() == name)
}

fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).map(|found| {
        found
            .descendants()
            .filter(|part| part.is_text())
            .filter_map(|part| part.text())
            .collect::<String>()
            .trim()
            .to_owned()
    })
}

fn number(node: roxmltree::Node<'_, '_>, name: &str) -> Result<u32, ParseError> {
    let text = child_text(node, name).ok_or_else(|| ParseError(format!("VM without {name}")))?;
    text.parse()
        .map_err(|_| ParseError(format!("VM {name} is {text:?}, not a number")))
}

fn vm_of(node: roxmltree::Node<'_, '_>) -> Result<Vm, ParseError> {
    let id = child_text(node, "ID").ok_or_else(|| ParseError("VM without ID".into()))?;
    if !is_vm_id(&id) {
        return Err(ParseError(format!("VM ID {id:?} is not a number")));
    }
    let ip = child(node, "TEMPLATE").and_then(|template| {
        element_children(template)
            .filter(|nic| nic.tag_name().name() == "NIC")
            .find_map(|nic| child_text(nic, "IP").filter(|ip| !ip.is_empty()))
    });
    let created = child_text(node, "STIME")
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|seconds| *seconds > 0)
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0));
    let user = child(node, "USER_TEMPLATE");
    Ok(Vm {
        id,
        name: child_text(node, "NAME").unwrap_or_default(),
        state: number(node, "STATE")?,
        lcm_state: number(node, "LCM_STATE")?,
        ip,
        created,
        token: user
            .and_then(|user| child_text(user, "CONPAAS_CLIENT_TOKEN"))
            .filter(|token| !token.is_empty()),
        labels: user.and_then(|user| child_text(user, "LABELS")),
    })
}

fn document(text: &str) -> Result<roxmltree::Document<'_>, ParseError> {
    roxmltree::Document::parse(text).map_err(|error| ParseError(format!("malformed XML: {error}")))
}

/// A `<VM>` document (`one.vm.info`).
pub(super) fn parse_vm(text: &str) -> Result<Vm, ParseError> {
    let document = document(text)?;
    let root = document.root_element();
    if root.tag_name().name() != "VM" {
        return Err(ParseError(format!(
            "expected VM, got {}",
            root.tag_name().name()
        )));
    }
    vm_of(root)
}

/// A `<VM_POOL>` document (`one.vmpool.info`).
pub(super) fn parse_pool(text: &str) -> Result<Vec<Vm>, ParseError> {
    let document = document(text)?;
    let root = document.root_element();
    if root.tag_name().name() != "VM_POOL" {
        return Err(ParseError(format!(
            "expected VM_POOL, got {}",
            root.tag_name().name()
        )));
    }
    element_children(root)
        .filter(|node| node.tag_name().name() == "VM")
        .map(vm_of)
        .collect()
}

/// The `TEMPLATE/CONTEXT` variables of a `<VMTEMPLATE>` document (`one.template.info`), in
/// order, their values as written (`$USER[SSH_PUBLIC_KEY]` stays a reference).
pub(super) fn parse_template_context(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let document = document(text)?;
    let root = document.root_element();
    if root.tag_name().name() != "VMTEMPLATE" {
        return Err(ParseError(format!(
            "expected VMTEMPLATE, got {}",
            root.tag_name().name()
        )));
    }
    let Some(context) = child(root, "TEMPLATE").and_then(|template| child(template, "CONTEXT"))
    else {
        return Ok(Vec::new());
    };
    Ok(element_children(context)
        .map(|variable| {
            let value = variable
                .children()
                .filter(|part| part.is_text())
                .filter_map(|part| part.text())
                .collect::<String>();
            (variable.tag_name().name().to_owned(), value)
        })
        .collect())
}

/// Whether `vmid` is an OpenNebula VM id: a number, never a path or a placeholder.
pub(super) fn is_vm_id(vmid: &str) -> bool {
    !vmid.is_empty() && vmid.len() <= 10 && vmid.bytes().all(|byte| byte.is_ascii_digit())
}

/// Whether `name` can name a template attribute: OpenNebula's are letters, digits and `_`,
/// not starting with a digit.
pub(super) fn is_attribute_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// One attribute of a template: a value, or a vector (`NAME = [ K = V, ... ]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attribute {
    Single(String, String),
    Vector(String, Vec<(String, String)>),
}

/// A template as XML: `<TEMPLATE>` with each attribute an element, a vector's members its
/// children. Attributes whose names OpenNebula would refuse are left out.
pub(super) fn template_xml(attributes: &[Attribute]) -> String {
    let mut xml = String::from("<TEMPLATE>");
    for attribute in attributes {
        match attribute {
            Attribute::Single(name, value) if is_attribute_name(name) => {
                xml.push_str(&format!("<{name}>{}</{name}>", escape(value)));
            }
            Attribute::Vector(name, members) if is_attribute_name(name) => {
                xml.push_str(&format!("<{name}>"));
                for (key, value) in members.iter().filter(|(key, _)| is_attribute_name(key)) {
                    xml.push_str(&format!("<{key}>{}</{key}>", escape(value)));
                }
                xml.push_str(&format!("</{name}>"));
            }
            _ => {}
        }
    }
    xml.push_str("</TEMPLATE>");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "<VM><ID>41</ID><UID>2</UID><GID>1</GID><UNAME>conpaas</UNAME>\
        <GNAME>users</GNAME><NAME>conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5</NAME>\
        <PERMISSIONS><OWNER_U>1</OWNER_U></PERMISSIONS><LAST_POLL>0</LAST_POLL>\
        <STATE>3</STATE><LCM_STATE>3</LCM_STATE><PREV_STATE>3</PREV_STATE>\
        <PREV_LCM_STATE>3</PREV_LCM_STATE><RESCHED>0</RESCHED><STIME>1700000000</STIME>\
        <ETIME>0</ETIME><DEPLOY_ID>one-41</DEPLOY_ID><MONITORING/><SCHED_ACTIONS/>\
        <TEMPLATE><CONTEXT><NETWORK><![CDATA[YES]]></NETWORK></CONTEXT>\
        <NIC><IP6_GLOBAL>2001:db8::1</IP6_GLOBAL></NIC>\
        <NIC><IP><![CDATA[192.168.0.17]]></IP><NETWORK_ID>1</NETWORK_ID></NIC></TEMPLATE>\
        <USER_TEMPLATE><CONPAAS_CLIENT_TOKEN><![CDATA[cps-1a2b3c4d-s5]]></CONPAAS_CLIENT_TOKEN>\
        <LABELS>conpaas</LABELS></USER_TEMPLATE><HISTORY_RECORDS/></VM>";

    #[test]
    fn a_vm_document_is_read() {
        let vm = parse_vm(VM).unwrap();
        assert_eq!(vm.id, "41");
        assert_eq!(vm.name, "conpaas-manager-php-u1-s5-cps-1a2b3c4d-s5");
        assert_eq!(vm.ip.as_deref(), Some("192.168.0.17"));
        assert_eq!(vm.token.as_deref(), Some("cps-1a2b3c4d-s5"));
        assert_eq!(vm.labels.as_deref(), Some("conpaas"));
        assert_eq!(vm.created.unwrap().timestamp(), 1_700_000_000);
        assert!(vm.is_running());
        assert_eq!(vm.node_state(), NodeState::Running);
        assert_eq!(vm.state_text(), "ACTIVE/RUNNING");
        assert!(parse_vm("<VM_POOL/>").is_err());
        assert!(parse_vm("<VM><ID>x</ID><STATE>1</STATE><LCM_STATE>0</LCM_STATE></VM>").is_err());
        assert!(parse_vm("<VM><ID>1</ID><LCM_STATE>0</LCM_STATE></VM>").is_err());
    }

    #[test]
    fn states_map_to_what_the_director_needs() {
        let vm = |state, lcm_state| Vm {
            id: "1".into(),
            name: String::new(),
            state,
            lcm_state,
            ip: None,
            created: None,
            token: None,
            labels: None,
        };
        for (state, lcm_state, expected) in [
            (0, 0, NodeState::Pending),
            (1, 0, NodeState::Pending),
            (2, 0, NodeState::Pending),
            (3, 1, NodeState::Pending),
            (3, 2, NodeState::Pending),
            (3, 3, NodeState::Running),
            (3, 16, NodeState::Pending),
            (3, 36, NodeState::Gone),
            (3, 39, NodeState::Gone),
            (3, 11, NodeState::Gone),
            (3, 12, NodeState::Gone),
            (4, 0, NodeState::Gone),
            (5, 0, NodeState::Pending),
            (6, 0, NodeState::Gone),
            (7, 0, NodeState::Gone),
            (8, 0, NodeState::Pending),
            (9, 0, NodeState::Gone),
            (11, 0, NodeState::Gone),
            (42, 0, NodeState::Pending),
        ] {
            assert_eq!(
                vm(state, lcm_state).node_state(),
                expected,
                "{state}/{lcm_state}"
            );
        }
        assert!(vm(3, 36).is_failed());
        assert!(vm(6, 0).is_ending());
        assert!(!vm(3, 2).is_ending());
        assert_eq!(vm(3, 36).state_text(), "ACTIVE/BOOT_FAILURE");
        assert_eq!(vm(3, 57).state_text(), "ACTIVE/LCM_STATE 57");
        assert_eq!(vm(42, 0).state_text(), "STATE 42");
    }

    #[test]
    fn a_short_pool_is_read() {
        let pool = "<VM_POOL><VM><ID>7</ID><NAME>a-cps-1-s1</NAME><STATE>1</STATE>\
                    <LCM_STATE>0</LCM_STATE><STIME>0</STIME><TEMPLATE><NIC><IP>10.0.0.7</IP></NIC>\
                    </TEMPLATE><USER_TEMPLATE><LABELS>conpaas</LABELS></USER_TEMPLATE></VM>\
                    <VM><ID>8</ID><NAME>b</NAME><STATE>3</STATE><LCM_STATE>3</LCM_STATE>\
                    <TEMPLATE/><USER_TEMPLATE/></VM></VM_POOL>";
        let vms = parse_pool(pool).unwrap();
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(vms[0].created, None);
        assert_eq!(vms[0].token, None);
        assert_eq!(vms[1].labels, None);
        assert_eq!(parse_pool("<VM_POOL/>").unwrap(), []);
        assert!(parse_pool("<VM/>").is_err());
    }

    #[test]
    fn a_templates_context_is_read_as_written() {
        let template = "<VMTEMPLATE><ID>7</ID><NAME>conpaas</NAME><TEMPLATE>\
            <CONTEXT><NETWORK><![CDATA[YES]]></NETWORK>\
            <SSH_PUBLIC_KEY><![CDATA[$USER[SSH_PUBLIC_KEY]]]></SSH_PUBLIC_KEY></CONTEXT>\
            <CPU>1</CPU></TEMPLATE></VMTEMPLATE>";
        assert_eq!(
            parse_template_context(template).unwrap(),
            [
                ("NETWORK".to_owned(), "YES".to_owned()),
                (
                    "SSH_PUBLIC_KEY".to_owned(),
                    "$USER[SSH_PUBLIC_KEY]".to_owned()
                )
            ]
        );
        assert_eq!(
            parse_template_context("<VMTEMPLATE><TEMPLATE/></VMTEMPLATE>").unwrap(),
            []
        );
    }

    #[test]
    fn templates_are_written_as_xml() {
        let xml = template_xml(&[
            Attribute::Single("NAME".into(), "vm <1> & \"2\"".into()),
            Attribute::Vector(
                "CONTEXT".into(),
                vec![
                    ("NETWORK".into(), "YES".into()),
                    ("BAD KEY".into(), "x".into()),
                    ("IP_PUBLIC".into(), "$NIC[IP]".into()),
                ],
            ),
            Attribute::Single("9LIVES".into(), "x".into()),
        ]);
        assert_eq!(
            xml,
            "<TEMPLATE><NAME>vm &lt;1&gt; &amp; &quot;2&quot;</NAME><CONTEXT><NETWORK>YES</NETWORK>\
             <IP_PUBLIC>$NIC[IP]</IP_PUBLIC></CONTEXT></TEMPLATE>"
        );
        assert!(is_attribute_name("CONPAAS_CLIENT_TOKEN"));
        assert!(!is_attribute_name("CONPAAS-X"));
        assert!(!is_attribute_name(""));
        assert!(is_vm_id("0"));
        assert!(!is_vm_id("../1"));
        assert!(!is_vm_id("None"));
    }
}
