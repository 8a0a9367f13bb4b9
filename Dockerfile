# syntax=docker/dockerfile:1
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p conveyor && cp target/release/conveyor /conveyor

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 conveyor \
    && mkdir /data && chown conveyor /data
COPY --from=build /conveyor /usr/local/bin/conveyor
USER conveyor
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["conveyor"]
CMD ["dev", "--listen", "0.0.0.0:8080"]
