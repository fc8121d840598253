//! The bridge from hickory-server's request loop to the [`super::Chain`]: checks
//! the request's shape, asks the current chain, encodes the reply (with the client's
//! EDNS, and an Extended DNS Error when there is one).

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_net::runtime::Time;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::Chain;
use super::reply::Reply;

/// The EDNS payload size ncdd advertises (DNS Flag Day 2020).
const EDNS_PAYLOAD: u16 = 1232;
/// The EDNS option code of Extended DNS Errors (RFC 8914 §2).
const EDE_OPTION_CODE: u16 = 15;

/// Serves requests from whatever chain is current.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    chain: Arc<ArcSwap<Chain>>,
}

impl DnsHandler {
    pub fn new(chain: Arc<ArcSwap<Chain>>) -> Self {
        Self { chain }
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let reply = match question(request) {
            Ok(query) => {
                let chain = self.chain.load_full();
                chain
                    .resolve(query.name(), query.query_type(), request.src().ip())
                    .await
            }
            Err(rcode) => Arc::new(Reply::error(rcode, None)),
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.rcode;
        metadata.recursion_available = true;

        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            if let Some((code, text)) = reply.ede {
                let mut data = code.to_be_bytes().to_vec();
                data.extend_from_slice(text.as_bytes());
                edns.options_mut().insert(EdnsOption::Unknown(EDE_OPTION_CODE, data));
            }
            edns
        });
        let fallback = metadata;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let message = builder.build(metadata, reply.answers.iter(), reply.authorities.iter(), [], []);
        match response.send_response(message).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, client = %request.src(), "could not send a response");
                let mut metadata = fallback;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// The one question a standard query asks, or the response code for a request
/// ncdd does not serve.
fn question(request: &Request) -> Result<&hickory_proto::op::LowerQuery, ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    let queries = request.queries.queries();
    if queries.len() != 1 {
        return Err(ResponseCode::FormErr);
    }
    let query = &queries[0];
    if query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    Ok(query)
}
