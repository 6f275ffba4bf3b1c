use ticketing_proto::v1::{self, waiting_room_service_server::WaitingRoomService};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use super::{context, orders::IDEMPOTENT_REPLAYED, status::to_status};
use crate::{
    AppState,
    app::{live, waiting_room},
    wire::parse_id,
};

#[derive(Clone)]
pub struct WaitingRoomApi {
    state: AppState,
}

impl WaitingRoomApi {
    pub fn new(state: AppState) -> WaitingRoomApi {
        WaitingRoomApi { state }
    }
}

#[tonic::async_trait]
impl WaitingRoomService for WaitingRoomApi {
    async fn get_challenge(
        &self,
        request: Request<v1::GetChallengeRequest>,
    ) -> Result<Response<v1::AltchaChallenge>, Status> {
        let ctx = context(&request);
        let event_id = parse_id(&request.get_ref().event_id, "eventId").map_err(to_status)?;
        waiting_room::get_challenge(&self.state, &ctx, event_id).await.map(Response::new).map_err(to_status)
    }

    async fn join_queue(&self, request: Request<v1::JoinQueueRequest>) -> Result<Response<v1::QueueEntry>, Status> {
        let ctx = context(&request);
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let (entry, created) =
            waiting_room::join_queue(&self.state, &ctx, event_id, &req.altcha).await.map_err(to_status)?;
        let mut response = Response::new(entry);
        if !created {
            // The customer's entry from an earlier join, as an order's replay says so.
            response.metadata_mut().insert(IDEMPOTENT_REPLAYED, MetadataValue::from_static("true"));
        }
        Ok(response)
    }

    async fn watch_queue_entry(
        &self,
        request: Request<v1::WatchQueueEntryRequest>,
    ) -> Result<Response<super::MessageStream<v1::QueueEntry>>, Status> {
        let ctx = context(&request);
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        let watch =
            live::watch_queue_entry(&self.state, &ctx, event_id, &req.queue_entry_id).await.map_err(to_status)?;
        Ok(Response::new(super::message_stream(watch)))
    }

    async fn get_queue_entry(
        &self,
        request: Request<v1::GetQueueEntryRequest>,
    ) -> Result<Response<v1::QueueEntry>, Status> {
        let ctx = context(&request);
        let req = request.into_inner();
        let event_id = parse_id(&req.event_id, "eventId").map_err(to_status)?;
        waiting_room::get_queue_entry(&self.state, &ctx, event_id, &req.queue_entry_id)
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}
