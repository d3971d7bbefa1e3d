//! The XML documents S3 exchanges, as serde structs (quick-xml). Scalars are read as
//! strings and converted in `response`, so that a server's odd formatting (empty
//! elements, whitespace) becomes a clear error message instead of a serde one.

use serde::{Deserialize, Serialize};

use crate::request::CompletedPart;

const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CompleteMultipartUploadXml {
    #[serde(rename = "@xmlns", default, skip_serializing_if = "Option::is_none")]
    pub(crate) xmlns: Option<String>,
    #[serde(rename = "Part", default)]
    pub(crate) parts: Vec<CompletePartXml>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CompletePartXml {
    pub(crate) part_number: u32,
    #[serde(rename = "ETag")]
    pub(crate) etag: String,
    #[serde(
        rename = "ChecksumCRC32",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) checksum_crc32: Option<String>,
    #[serde(
        rename = "ChecksumCRC32C",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) checksum_crc32c: Option<String>,
    #[serde(
        rename = "ChecksumCRC64NVME",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) checksum_crc64nvme: Option<String>,
    #[serde(
        rename = "ChecksumSHA1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) checksum_sha1: Option<String>,
    #[serde(
        rename = "ChecksumSHA256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) checksum_sha256: Option<String>,
}

pub(crate) fn complete_multipart_upload_body(parts: &[CompletedPart]) -> String {
    use crate::checksum::ChecksumAlgorithm;
    let doc = CompleteMultipartUploadXml {
        xmlns: Some(S3_XMLNS.to_owned()),
        parts: parts
            .iter()
            .map(|p| {
                let value = |a: ChecksumAlgorithm| {
                    p.checksum
                        .filter(|c| c.algorithm == a)
                        .map(|c| c.to_base64())
                };
                CompletePartXml {
                    part_number: p.part_number.get(),
                    etag: p.etag.as_str().to_owned(),
                    checksum_crc32: value(ChecksumAlgorithm::Crc32),
                    checksum_crc32c: value(ChecksumAlgorithm::Crc32c),
                    checksum_crc64nvme: value(ChecksumAlgorithm::Crc64Nvme),
                    checksum_sha1: value(ChecksumAlgorithm::Sha1),
                    checksum_sha256: value(ChecksumAlgorithm::Sha256),
                }
            })
            .collect(),
    };
    // Serializing plain strings and numbers into a String cannot fail; an empty body
    // would be refused by the server as MalformedXML rather than corrupt anything.
    quick_xml::se::to_string_with_root("CompleteMultipartUpload", &doc).unwrap_or_default()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBucketConfigurationXml<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'a str,
    location_constraint: &'a str,
}

pub(crate) fn create_bucket_body(region: &str) -> String {
    let doc = CreateBucketConfigurationXml {
        xmlns: S3_XMLNS,
        location_constraint: region,
    };
    quick_xml::se::to_string_with_root("CreateBucketConfiguration", &doc).unwrap_or_default()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ErrorXml {
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) host_id: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) bucket_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct InitiateMultipartUploadResultXml {
    pub(crate) bucket: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) upload_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CompleteMultipartUploadResultXml {
    pub(crate) location: Option<String>,
    pub(crate) bucket: Option<String>,
    pub(crate) key: Option<String>,
    #[serde(rename = "ETag")]
    pub(crate) etag: Option<String>,
    #[serde(rename = "ChecksumCRC32")]
    pub(crate) crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    pub(crate) crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    pub(crate) crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    pub(crate) sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    pub(crate) sha256: Option<String>,
    pub(crate) checksum_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ListPartsResultXml {
    pub(crate) bucket: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) upload_id: Option<String>,
    pub(crate) part_number_marker: Option<String>,
    pub(crate) next_part_number_marker: Option<String>,
    pub(crate) max_parts: Option<String>,
    pub(crate) is_truncated: Option<String>,
    #[serde(rename = "Part")]
    pub(crate) parts: Vec<PartXml>,
    pub(crate) checksum_algorithm: Option<String>,
    pub(crate) checksum_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PartXml {
    pub(crate) part_number: Option<String>,
    pub(crate) last_modified: Option<String>,
    #[serde(rename = "ETag")]
    pub(crate) etag: Option<String>,
    pub(crate) size: Option<String>,
    #[serde(rename = "ChecksumCRC32")]
    pub(crate) crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    pub(crate) crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    pub(crate) crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    pub(crate) sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    pub(crate) sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ListMultipartUploadsResultXml {
    pub(crate) bucket: Option<String>,
    pub(crate) key_marker: Option<String>,
    pub(crate) upload_id_marker: Option<String>,
    pub(crate) next_key_marker: Option<String>,
    pub(crate) next_upload_id_marker: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) delimiter: Option<String>,
    pub(crate) max_uploads: Option<String>,
    pub(crate) is_truncated: Option<String>,
    #[serde(rename = "Upload")]
    pub(crate) uploads: Vec<UploadXml>,
    pub(crate) common_prefixes: Vec<CommonPrefixXml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct UploadXml {
    pub(crate) key: Option<String>,
    pub(crate) upload_id: Option<String>,
    pub(crate) initiated: Option<String>,
    pub(crate) storage_class: Option<String>,
    pub(crate) checksum_algorithm: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CommonPrefixXml {
    pub(crate) prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ListBucketResultXml {
    pub(crate) name: Option<String>,
    pub(crate) prefix: Option<String>,
    pub(crate) delimiter: Option<String>,
    pub(crate) max_keys: Option<String>,
    pub(crate) key_count: Option<String>,
    pub(crate) is_truncated: Option<String>,
    pub(crate) continuation_token: Option<String>,
    pub(crate) next_continuation_token: Option<String>,
    pub(crate) start_after: Option<String>,
    pub(crate) contents: Vec<ObjectXml>,
    pub(crate) common_prefixes: Vec<CommonPrefixXml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ObjectXml {
    pub(crate) key: Option<String>,
    pub(crate) last_modified: Option<String>,
    #[serde(rename = "ETag")]
    pub(crate) etag: Option<String>,
    pub(crate) size: Option<String>,
    pub(crate) storage_class: Option<String>,
    pub(crate) checksum_algorithm: Vec<String>,
    pub(crate) checksum_type: Option<String>,
}

/// The name of the document's root element, skipping the declaration, comments and the
/// whitespace S3 sends while a CompleteMultipartUpload is in progress.
pub(crate) fn root_element(body: &str) -> Result<Option<String>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                return Ok(Some(
                    String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                ));
            }
            Ok(Event::Eof) => return Ok(None),
            Ok(Event::Text(t)) if !t.iter().all(u8::is_ascii_whitespace) => {
                return Err("text before the root element".to_owned());
            }
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::ChecksumAlgorithm;
    use crate::types::{ETag, PartNumber};

    #[test]
    fn complete_body_round_trips_10000_parts() {
        let parts: Vec<CompletedPart> = (1..=10_000u32)
            .map(|n| CompletedPart {
                part_number: PartNumber::new(n).unwrap(),
                etag: ETag::new(format!("\"{:032x}\"", u128::from(n) * 0x9E37_79B9)),
                checksum: Some(crate::Checksum::of(
                    ChecksumAlgorithm::Crc32,
                    &n.to_be_bytes(),
                )),
            })
            .collect();
        let body = complete_multipart_upload_body(&parts);
        assert!(body.starts_with(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Part><PartNumber>1</PartNumber><ETag>"
        ), "{}", &body[..200]);
        assert_eq!(body.matches("<Part>").count(), 10_000);
        let back: CompleteMultipartUploadXml = quick_xml::de::from_str(&body).unwrap();
        assert_eq!(back.parts.len(), 10_000);
        for (p, x) in parts.iter().zip(&back.parts) {
            assert_eq!(x.part_number, p.part_number.get());
            assert_eq!(x.etag, p.etag.as_str());
            assert_eq!(
                x.checksum_crc32.as_deref(),
                Some(p.checksum.unwrap().to_base64().as_str())
            );
            assert_eq!(x.checksum_crc32c, None);
        }
    }

    #[test]
    fn complete_body_names_each_algorithm_in_its_element() {
        for a in ChecksumAlgorithm::ALL {
            let c = crate::Checksum::of(a, b"part");
            let part = CompletedPart {
                part_number: PartNumber::new(1).unwrap(),
                etag: ETag::new("\"e\""),
                checksum: Some(c),
            };
            let body = complete_multipart_upload_body(&[part]);
            let element = format!("<{0}>{1}</{0}>", a.xml_element(), c.to_base64());
            assert!(body.contains(&element), "{a}: {body}");
            assert_eq!(body.matches("<Checksum").count(), 1, "{a}: {body}");
        }
    }

    #[test]
    fn create_bucket_body_shape() {
        assert_eq!(
            create_bucket_body("eu-west-1"),
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>"
        );
    }

    #[test]
    fn root_detection() {
        assert_eq!(
            root_element("<?xml version=\"1.0\"?>\n<Error/>")
                .unwrap()
                .as_deref(),
            Some("Error")
        );
        assert_eq!(
            root_element("   \n  <Error><Code>x</Code></Error>")
                .unwrap()
                .as_deref(),
            Some("Error")
        );
        assert_eq!(root_element("").unwrap(), None);
        assert!(root_element("hello <Error/>").is_err());
    }
}
