//! Runs one machine operation: builds the request with s3-protocol, sends it, moves the
//! bytes between the wire and the local side, and reports what happened. It decides
//! nothing: retries and their timing belong to transfer-core.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use md5_many::Md5State;
use s3_protocol as p;
use tokio::sync::Semaphore;
use transfer_core::{
    ByteRange, ChecksumAlgorithm, ChecksumKind, ChecksumValue, ETag, Failure, FailureKind,
    ListedPart, ObjectChecksum, ObjectInfo, OpKind, Outcome, PartNumber, RangeHashes,
    check_range_answer,
};

use crate::body::Payload;
use crate::http::{HttpClient, body_failure, response_failure};
use crate::io::{Sink, Source};
use crate::md5_lanes::Md5Lanes;

/// Everything an operation of one transfer needs.
pub(crate) struct OpContext {
    pub(crate) http: HttpClient,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) source: Option<Arc<Source>>,
    pub(crate) sink: Option<Arc<Sink>>,
    /// The manager-wide cap on requests in flight.
    pub(crate) permits: Arc<Semaphore>,
    /// Ranges in flight of a download: a stream's ranges stay within that many ranges of
    /// its write position, and within the memory budget.
    pub(crate) download_in_flight: u64,
    /// The memory budget (`Config::max_memory_bytes`): what a stream's ranges received
    /// out of order may hold while they wait for their turn (one range at least).
    pub(crate) memory_budget_bytes: u64,
    /// The upload's checksum algorithm, which Complete's full-object checksum is in.
    pub(crate) upload_checksum: Option<ChecksumAlgorithm>,
    /// The manager's MD5 hasher, shared by the ranges of all its downloads.
    pub(crate) md5_lanes: Arc<Md5Lanes>,
}

fn part_number(n: PartNumber) -> Result<p::PartNumber, Failure> {
    p::PartNumber::new(n.0)
        .ok_or_else(|| Failure::new(FailureKind::Other, format!("invalid part number {n}")))
}

fn build_failure(e: p::RequestError) -> Failure {
    Failure::new(
        FailureKind::InvalidRequest,
        format!("cannot build the request: {e}"),
    )
}

impl OpContext {
    pub(crate) async fn execute(&self, kind: OpKind) -> Outcome {
        let result = match kind {
            OpKind::PreparePartialFile {
                size_bytes,
                create,
                in_order,
            } => self
                .sink()
                .prepare(size_bytes, create, in_order)
                .await
                .map(|previous_len| Outcome::FilePrepared { previous_len }),
            OpKind::HashPartialFile { hashes } => {
                self.sink()
                    .hash_whole(hashes)
                    .await
                    .map(|h| Outcome::FileHashed {
                        md5: h.md5,
                        checksum: h.checksum,
                        multipart_etags: h.multipart_etags,
                    })
            }
            OpKind::CommitPartialFile => {
                self.sink().commit().await.map(|()| Outcome::FileCommitted)
            }
            OpKind::DeletePartialFile => self.sink().delete().await.map(|()| Outcome::FileDeleted),
            OpKind::HashPartialRange { range, hashes } => self
                .hash_partial(range, hashes)
                .await
                .map(|(checksum, md5)| Outcome::PartialRangeHashed { checksum, md5 }),
            OpKind::ReadStream { range } => match self.source() {
                Ok(source) => source
                    .read_stream(range)
                    .await
                    .map(|len_bytes| Outcome::StreamRead { len_bytes }),
                Err(e) => Err(e),
            },
            OpKind::HashSourceRange { range, checksum } => self
                .hash_source(range, checksum)
                .await
                .map(|(md5, checksum)| Outcome::SourceHashed { md5, checksum }),
            kind => {
                // Only network operations count against the manager-wide cap.
                let _permit = self.permits.acquire().await;
                self.network(kind).await
            }
        };
        result.unwrap_or_else(Outcome::Failed)
    }

    fn sink(&self) -> &Sink {
        self.sink
            .as_deref()
            .expect("download operations run with a sink")
    }

    async fn network(&self, kind: OpKind) -> Result<Outcome, Failure> {
        let s3 = self.http.s3();
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        match kind {
            OpKind::PutObject {
                range,
                checksum,
                streamed,
            } => {
                let (data, sum) = self
                    .part_body(self.source()?, range, checksum, streamed)
                    .await?;
                let mut put = p::PutObject::new(
                    bucket,
                    key,
                    p::RequestBody::External {
                        content_length: data.len(),
                    },
                );
                put.checksum = sum;
                let req = put.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.send_with_body(req, data).await?;
                let out = p::parse_put_object(status, &headers, &body).map_err(response_failure)?;
                Ok(Outcome::ObjectPut {
                    etag: out.etag,
                    checksum: sum.map(|c| c.value),
                    server_checksum: echo(&out.checksums, checksum),
                })
            }
            OpKind::CreateMultipartUpload {
                checksum,
                checksum_type,
                metadata,
            } => {
                let mut c = p::CreateMultipartUpload::new(bucket, key);
                c.metadata = metadata;
                c.checksum_algorithm = checksum;
                c.checksum_type = checksum_type;
                let req = c.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.http.send_buffered(req).await?;
                let out = p::parse_create_multipart_upload(status, &headers, &body)
                    .map_err(response_failure)?;
                Ok(Outcome::UploadCreated {
                    upload_id: out.upload_id,
                })
            }
            OpKind::UploadPart {
                upload_id,
                part,
                range,
                checksum,
                streamed,
            } => {
                let source = self.source()?;
                let (data, sum) = self.part_body(source, range, checksum, streamed).await?;
                let up = p::UploadPart {
                    bucket,
                    key,
                    upload_id,
                    part_number: part_number(part)?,
                    body: p::RequestBody::External {
                        content_length: data.len(),
                    },
                    checksum: sum,
                    content_md5: None,
                };
                let req = up.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.send_with_body(req, data).await?;
                let out =
                    p::parse_upload_part(status, &headers, &body).map_err(response_failure)?;
                source.release(range).await;
                Ok(Outcome::PartUploaded {
                    etag: out.etag,
                    checksum: sum.map(|c| c.value),
                    server_checksum: echo(&out.checksums, checksum),
                })
            }
            OpKind::ListParts {
                upload_id,
                part_number_marker,
            } => {
                let lp = p::ListParts {
                    bucket,
                    key,
                    upload_id,
                    max_parts: None,
                    part_number_marker,
                };
                let req = lp.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.http.send_buffered(req).await?;
                let out = p::parse_list_parts(status, &headers, &body).map_err(response_failure)?;
                let parts = out
                    .parts
                    .into_iter()
                    .map(|lp| ListedPart {
                        part: PartNumber(lp.part_number),
                        etag: lp.etag,
                        size_bytes: Some(lp.size_bytes),
                    })
                    .collect();
                let next = if out.is_truncated {
                    out.next_part_number_marker
                } else {
                    None
                };
                Ok(Outcome::PartsListed {
                    parts,
                    next_part_number_marker: next,
                })
            }
            OpKind::CompleteMultipartUpload {
                upload_id,
                parts,
                full_object_checksum,
            } => {
                let algorithm = self.upload_checksum;
                let parts = parts
                    .into_iter()
                    .map(|cp| {
                        Ok(p::CompletedPart {
                            part_number: part_number(cp.part)?,
                            etag: cp.etag,
                            checksum: algorithm.zip(cp.checksum).map(|(a, value)| p::Checksum {
                                algorithm: a,
                                value,
                            }),
                        })
                    })
                    .collect::<Result<Vec<_>, Failure>>()?;
                let c = p::CompleteMultipartUpload {
                    bucket,
                    key,
                    upload_id,
                    parts,
                    full_object_checksum: algorithm.zip(full_object_checksum).map(|(a, value)| {
                        p::Checksum {
                            algorithm: a,
                            value,
                        }
                    }),
                };
                let req = c.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.http.send_buffered(req).await?;
                let out = p::parse_complete_multipart_upload(status, &headers, &body)
                    .map_err(response_failure)?;
                Ok(Outcome::UploadCompleted {
                    etag: out.etag,
                    server_checksum: algorithm
                        .and_then(|a| out.checksums.crc(a))
                        .map(|c| (c.value, c.parts)),
                })
            }
            OpKind::AbortMultipartUpload { upload_id } => {
                let a = p::AbortMultipartUpload {
                    bucket,
                    key,
                    upload_id,
                };
                let req = a.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.http.send_buffered(req).await?;
                p::parse_abort_multipart_upload(status, &headers, &body)
                    .map_err(response_failure)?;
                Ok(Outcome::UploadAborted)
            }
            OpKind::HeadObject {
                part_number: pn,
                if_match,
            } => {
                let mut h = p::HeadObject::new(bucket, key);
                h.checksum_mode = true;
                h.part_number = pn.map(part_number).transpose()?;
                h.if_match = if_match;
                let req = h.build(s3).map_err(build_failure)?;
                let (status, headers, body) = self.http.send_buffered(req).await?;
                parse_object_info(status, &headers, &body)
                    .map(Outcome::ObjectInfo)
                    .map_err(response_failure)
            }
            OpKind::GetRange {
                range,
                if_match,
                hashes,
            } => {
                let sink = self.sink();
                // Streams receive bytes in order: stay within a window of the write position,
                // as many ranges as fit the memory budget.
                let len = range.len_bytes().max(1);
                let ranges =
                    (self.memory_budget_bytes / len).clamp(1, self.download_in_flight.max(1));
                let window = ranges.saturating_mul(len);
                sink.wait_turn(range, window).await;
                let mut g = p::GetObject::new(bucket, key);
                let pinned = if_match;
                g.if_match = Some(pinned.clone());
                g.range = p::ByteRange::new(range.start, range.end);
                let req = g.build(s3).map_err(build_failure)?;
                let resp = self.http.send(req, None).await?;
                let (parts, mut body) = resp.into_parts();
                if !parts.status.is_success() {
                    let bytes = self.http.read_body(body).await.unwrap_or_default();
                    return Err(response_failure(
                        p::parse_error(parts.status, &parts.headers, &bytes).into(),
                    ));
                }
                let out = p::parse_get_object(parts.status, &parts.headers, &[])
                    .map_err(response_failure)?;
                let served = out
                    .content_range
                    .map(|c| ByteRange::new(c.range.start(), c.range.end()));
                check_range_answer(range, &pinned, out.etag.as_ref(), served)?;
                let mut crc = hashes.checksum.map(p::ChecksumHasher::new);
                // The MD5 is hashed in lanes beside the other ranges' (see md5_lanes.rs).
                let md5 = hashes.md5.then(|| self.md5_lanes.open());
                let mut offset = range.start;
                // Frames go to the file as hyper received them (no copy), a batch at a time.
                const FLUSH: usize = 1 << 20;
                let mut frames: Vec<Bytes> = Vec::new();
                let mut buffered = 0usize;
                loop {
                    let frame = tokio::time::timeout(self.http.read_timeout(), body.frame()).await;
                    let frame = match frame {
                        Err(_) => return Err(self.http.body_silence()),
                        Ok(None) => break,
                        Ok(Some(Err(e))) => return Err(body_failure(&e)),
                        Ok(Some(Ok(f))) => f,
                    };
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Some(wait) = self.http.bandwidth().map(|b| b.charge(data.len()))
                        && !wait.is_zero()
                    {
                        tokio::time::sleep(wait).await;
                    }
                    if offset + (buffered + data.len()) as u64 > range.end {
                        return Err(Failure::new(
                            FailureKind::Transient,
                            "the server sent more bytes than asked for",
                        ));
                    }
                    if let Some(h) = crc.as_mut() {
                        h.update(&data);
                    }
                    if let Some(lane) = &md5 {
                        lane.push(data.clone()).await?;
                    }
                    crate::body::on_wire(data.len());
                    buffered += data.len();
                    frames.push(data);
                    if buffered >= FLUSH && matches!(sink, Sink::File { .. }) {
                        sink.write_at(offset, std::mem::take(&mut frames)).await?;
                        offset += buffered as u64;
                        buffered = 0;
                    }
                }
                let received = offset - range.start + buffered as u64;
                if received != range.len_bytes() {
                    return Err(Failure::new(
                        FailureKind::Transport,
                        format!(
                            "truncated body: {received} of {} bytes of {range}",
                            range.len_bytes()
                        ),
                    ));
                }
                if !frames.is_empty() {
                    sink.write_at(offset, frames).await?;
                }
                let md5 = match md5 {
                    Some(lane) => Some(lane.finish().await?),
                    None => None,
                };
                // Durability is the checkpoint thread's job: it syncs the file before
                // saving any checkpoint that names these bytes, off this request's path.
                Ok(Outcome::RangeWritten {
                    checksum: crc.map(|h| h.value()),
                    md5,
                })
            }
            other => Err(Failure::new(
                FailureKind::Other,
                format!("{} is not a network operation", other.name()),
            )),
        }
    }

    /// The body of a part (or single PutObject) of `range`, and its checksum. In memory;
    /// or, for a `streamed` part of a file, hashed in a first pass read a chunk at a time
    /// (the checksum header must be known before the body is sent) and then streamed from
    /// the file again, so that memory stays at a few chunks whatever the part size. A
    /// stream (or bytes in memory) cannot be read twice and is held whole.
    async fn part_body(
        &self,
        source: &Source,
        range: ByteRange,
        checksum: Option<ChecksumAlgorithm>,
        streamed: bool,
    ) -> Result<(Payload, Option<p::Checksum>), Failure> {
        if streamed && let Some(file_range) = source.file_range(range) {
            // Without a checksum to send, a CRC32 still tells whether the second pass read
            // the bytes the first one did.
            let algorithm = checksum.unwrap_or_default();
            let (_, crc) = file_range.hash(Some(algorithm), false).await?;
            let verify = crc.map(|value| (algorithm, value));
            let sum = verify
                .filter(|_| checksum.is_some())
                .map(|(algorithm, value)| p::Checksum { algorithm, value });
            return Ok((
                Payload::Streamed {
                    range: file_range,
                    checksum: verify,
                },
                sum,
            ));
        }
        let data = source.read(range).await?;
        let sum = checksum.map(|a| p::Checksum::of(a, &data));
        Ok((Payload::Bytes(data), sum))
    }

    /// MD5 (and the CRC, when asked for) of `range` of the source: a part the server has
    /// that no checkpoint recorded, or a part sent earlier that is checked again before
    /// the upload completes. A file is read a chunk at a time on a blocking thread, so a
    /// part of any size costs a few MiB of memory.
    async fn hash_source(
        &self,
        range: ByteRange,
        checksum: Option<ChecksumAlgorithm>,
    ) -> Result<([u8; 16], Option<ChecksumValue>), Failure> {
        let source = self.source()?;
        if matches!(source, Source::Reader(_) | Source::Stream(_)) {
            return Err(Failure::new(
                FailureKind::Other,
                "a streamed source is read once: the part is sent again",
            ));
        }
        if let Some(file_range) = source.file_range(range) {
            let (md5, crc) = file_range.hash(checksum, true).await?;
            return Ok((md5.unwrap_or_default(), crc));
        }
        let data = source.read(range).await?;
        tokio::task::spawn_blocking(move || {
            let mut md5 = Md5State::new();
            md5.update(&data);
            let crc = checksum.map(|a| p::Checksum::of(a, &data).value);
            (md5.finalize(), crc)
        })
        .await
        .map_err(|e| Failure::new(FailureKind::LocalIo, format!("hashing task failed: {e}")))
    }

    /// What `hashes` asks for over `range` of the partial file: ranges carried over from
    /// an earlier run, checked before they are trusted.
    async fn hash_partial(
        &self,
        range: ByteRange,
        hashes: RangeHashes,
    ) -> Result<(Option<ChecksumValue>, Option<[u8; 16]>), Failure> {
        let crc = hashes.checksum.map(p::ChecksumHasher::new);
        let md5 = hashes.md5.then(Md5State::new);
        let (crc, md5) = self
            .sink()
            .fold_range(range, (crc, md5), |(crc, md5), chunk| {
                if let Some(h) = crc.as_mut() {
                    h.update(chunk);
                }
                if let Some(h) = md5.as_mut() {
                    h.update(chunk);
                }
            })
            .await?;
        Ok((crc.map(|h| h.value()), md5.map(|h| h.finalize())))
    }

    fn source(&self) -> Result<&Source, Failure> {
        self.source
            .as_deref()
            .ok_or_else(|| Failure::new(FailureKind::Other, "upload operation without a source"))
    }

    async fn send_with_body(
        &self,
        req: http::Request<p::RequestBody>,
        data: Payload,
    ) -> Result<(http::StatusCode, http::HeaderMap, bytes::Bytes), Failure> {
        self.http.send_reading_body(req, Some(data)).await
    }
}

/// The checksum of `algorithm` a server echoed in its answer, if it did.
fn echo(
    checksums: &p::ResponseChecksums,
    algorithm: Option<ChecksumAlgorithm>,
) -> Option<ChecksumValue> {
    checksums.crc(algorithm?).map(|c| c.value)
}

/// A HeadObject answer as the state machines read it.
pub(crate) fn parse_object_info(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<ObjectInfo, p::ResponseError> {
    p::parse_head_object(status, headers, body).map(|out| object_info(out, headers))
}

fn object_info(out: p::HeadObjectOutput, headers: &http::HeaderMap) -> ObjectInfo {
    let checksum = out.checksums.first().map(|(algorithm, v)| ObjectChecksum {
        algorithm,
        value: v.value,
        kind: ChecksumKind::reported(out.checksums.checksum_type, v.parts),
    });
    let sse = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag_not_md5 = sse("x-amz-server-side-encryption")
        .is_some_and(|v| v.starts_with("aws:kms"))
        || sse("x-amz-server-side-encryption-customer-algorithm").is_some();
    ObjectInfo {
        content_length: out.content_length,
        etag: out.etag.unwrap_or_else(|| ETag(String::new())),
        last_modified: out.last_modified,
        checksum,
        parts_count: out.parts_count,
        part_range: out
            .content_range
            .map(|c| ByteRange::new(c.range.start(), c.range.end())),
        etag_not_md5,
        metadata: out.metadata,
    }
}
