//! The EC2 answers the driver reads: instances (`RunInstances`, `DescribeInstances`) and errors.
//! Elements are matched by local name, so the answer's namespace (API version) does not matter.

use roxmltree::{Document, Node};

/// One instance of an `instancesSet`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Instance {
    /// `instanceId`.
    pub id: String,
    /// `instanceState/name` (`pending`, `running`, `terminated`...); empty when absent.
    pub state: String,
    /// `ipAddress`: the public IPv4 address.
    pub public_ip: Option<String>,
    /// `privateIpAddress`.
    pub private_ip: Option<String>,
    /// `stateReason/message`, when EC2 says why an instance stopped.
    pub state_reason: Option<String>,
    /// `clientToken`: the idempotency token the instance was launched with, if any.
    pub client_token: Option<String>,
    /// `launchTime` (ISO 8601), when EC2 gives it.
    pub launch_time: Option<String>,
}

/// One page of a `DescribeInstances` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Page {
    /// The page's instances.
    pub instances: Vec<Instance>,
    /// `nextToken`: present when more pages follow.
    pub next_token: Option<String>,
}

/// An EC2 error answer: `Response/Errors/Error/{Code,Message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiError {
    /// e.g. `InvalidAMIID.NotFound`.
    pub code: String,
    /// EC2's explanation.
    pub message: String,
}

fn is(node: &Node<'_, '_>, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name
}

/// The trimmed, non-empty text of `parent`'s direct child `name`. Direct children only: an
/// instance's network interfaces hold `privateIpAddress` elements of their own.
fn child_text(parent: &Node<'_, '_>, name: &str) -> Option<String> {
    parent
        .children()
        .find(|child| is(child, name))
        .and_then(|child| child.text())
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

fn child<'a, 'input>(parent: &Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    parent.children().find(|child| is(child, name))
}

/// Every instance in the answer's `instancesSet` elements, in order.
pub(super) fn instances(xml: &str) -> Result<Vec<Instance>, String> {
    let document = Document::parse(xml).map_err(|error| format!("unreadable XML: {error}"))?;
    instances_of(&document)
}

fn instances_of(document: &Document<'_>) -> Result<Vec<Instance>, String> {
    let mut found = Vec::new();
    for set in document
        .descendants()
        .filter(|node| is(node, "instancesSet"))
    {
        for item in set.children().filter(|node| is(node, "item")) {
            let id = child_text(&item, "instanceId")
                .ok_or_else(|| "an instance without instanceId".to_owned())?;
            let state = child(&item, "instanceState")
                .and_then(|state| child_text(&state, "name"))
                .unwrap_or_default();
            found.push(Instance {
                id,
                state,
                public_ip: child_text(&item, "ipAddress"),
                private_ip: child_text(&item, "privateIpAddress"),
                state_reason: child(&item, "stateReason")
                    .and_then(|reason| child_text(&reason, "message")),
                client_token: child_text(&item, "clientToken"),
                launch_time: child_text(&item, "launchTime"),
            });
        }
    }
    Ok(found)
}

/// A `DescribeInstances` page: its instances and the root's `nextToken`, if any.
pub(super) fn page(xml: &str) -> Result<Page, String> {
    let document = Document::parse(xml).map_err(|error| format!("unreadable XML: {error}"))?;
    Ok(Page {
        instances: instances_of(&document)?,
        next_token: child_text(&document.root_element(), "nextToken"),
    })
}

/// Whether the answer's first `set` element (`imagesSet`, `subnetSet`...) holds an `item`.
pub(super) fn set_has_items(xml: &str, set: &str) -> Result<bool, String> {
    let document = Document::parse(xml).map_err(|error| format!("unreadable XML: {error}"))?;
    Ok(document
        .descendants()
        .find(|node| is(node, set))
        .is_some_and(|found| found.children().any(|node| is(&node, "item"))))
}

/// The first `Error` of an error answer, if the body is one.
pub(super) fn api_error(xml: &str) -> Option<ApiError> {
    let document = Document::parse(xml).ok()?;
    let error = document.descendants().find(|node| is(node, "Error"))?;
    Some(ApiError {
        code: child_text(&error, "Code")?,
        message: child_text(&error, "Message").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_with_and_without_items() {
        let full = "<DescribeImagesResponse><imagesSet><item><imageId>ami-1</imageId></item>\
                    </imagesSet></DescribeImagesResponse>";
        assert_eq!(set_has_items(full, "imagesSet"), Ok(true));
        let empty = "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>";
        assert_eq!(set_has_items(empty, "imagesSet"), Ok(false));
        assert_eq!(set_has_items(full, "subnetSet"), Ok(false));
        assert!(set_has_items("<a", "imagesSet").is_err());
    }

    /// The shape of a `RunInstances` answer (trimmed from moto 5.2 and AWS's documentation).
    const RUN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r-1</requestId>
  <reservationId>r-0a1</reservationId>
  <instancesSet>
    <item>
      <instanceId>i-0123456789abcdef0</instanceId>
      <imageId>ami-1e749f67</imageId>
      <instanceState><code>0</code><name>pending</name></instanceState>
      <privateIpAddress>10.0.0.12</privateIpAddress>
      <ipAddress/>
      <tagSet><item><key>Name</key><value>conpaas-manager-php-u1-s1</value></item></tagSet>
      <networkInterfaceSet>
        <item><privateIpAddress>10.9.9.9</privateIpAddress>
          <association><publicIp>54.0.0.9</publicIp></association></item>
      </networkInterfaceSet>
    </item>
  </instancesSet>
</RunInstancesResponse>"#;

    #[test]
    fn reads_the_instance_and_not_its_interfaces() {
        assert_eq!(
            instances(RUN),
            Ok(vec![Instance {
                id: "i-0123456789abcdef0".into(),
                state: "pending".into(),
                public_ip: None,
                private_ip: Some("10.0.0.12".into()),
                state_reason: None,
                client_token: None,
                launch_time: None,
            }])
        );
    }

    #[test]
    fn reads_describe_answers() {
        let xml = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <reservationSet><item><reservationId>r-1</reservationId><instancesSet><item>
    <instanceId>i-1</instanceId><instanceState><code>48</code><name>terminated</name></instanceState>
    <stateReason><code>Server.InternalError</code><message>Server.InternalError: Internal error on launch</message></stateReason>
    <ipAddress> 54.1.2.3 </ipAddress>
    <clientToken>cps-1a2b3c4d-s5</clientToken><launchTime>2026-12-03T12:00:00.000Z</launchTime>
  </item></instancesSet></item></reservationSet>
  <nextToken>page-2</nextToken>
</DescribeInstancesResponse>"#;
        let found = instances(xml).map_err(|error| error.to_string());
        assert_eq!(
            found,
            Ok(vec![Instance {
                id: "i-1".into(),
                state: "terminated".into(),
                public_ip: Some("54.1.2.3".into()),
                private_ip: None,
                state_reason: Some("Server.InternalError: Internal error on launch".into()),
                client_token: Some("cps-1a2b3c4d-s5".into()),
                launch_time: Some("2026-12-03T12:00:00.000Z".into()),
            }])
        );
        assert_eq!(
            instances("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"),
            Ok(vec![])
        );
        assert_eq!(
            page(xml).map(|page| page.next_token),
            Ok(Some("page-2".to_owned()))
        );
        assert_eq!(
            page("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>"),
            Ok(Page {
                instances: vec![],
                next_token: None
            })
        );
        assert!(instances("<a><instancesSet><item/></instancesSet></a>").is_err());
        assert!(instances("not xml").is_err());
    }

    #[test]
    fn reads_errors() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        assert_eq!(
            api_error(xml),
            Some(ApiError {
                code: "InvalidAMIID.NotFound".into(),
                message: "The image id '[ami-1]' does not exist".into(),
            })
        );
        // The front end's own answers (bad signature, throttling) use `ErrorResponse`.
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code></Error></ErrorResponse>";
        assert_eq!(
            api_error(xml),
            Some(ApiError {
                code: "Throttling".into(),
                message: String::new(),
            })
        );
        assert_eq!(api_error("<html>bad gateway</html>"), None);
        assert_eq!(api_error(""), None);
    }
}
