//! What every `/v1` request passes before its route: the bearer token is verified and the caller
//! kept for the route's [`Scoped`](crate::auth::Scoped) extractor.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

use crate::auth::{Authenticator, bearer_token};
use crate::problem::ApiError;

pub(crate) async fn admit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let authenticator = request
        .app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("no authenticator configured".into()))?;
    let verified = match bearer_token(request.headers()) {
        Ok(token) => authenticator.verify(token).await,
        Err(error) => Err(error),
    };
    match verified {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(next.call(request).await?.map_into_boxed_body())
        }
        Err(error) => Ok(request.into_response(error.error_response())),
    }
}
