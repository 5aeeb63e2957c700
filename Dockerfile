# syntax=docker/dockerfile:1
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p segments

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/segments segments \
    && mkdir -p /var/lib/segments && chown segments /var/lib/segments
COPY --from=build /src/target/release/segments /usr/local/bin/segments
COPY config /etc/segments
ENV SEGMENTS_CONFIG_DIR=/etc/segments \
    SEGMENTS_ENV=production
USER segments
WORKDIR /var/lib/segments
EXPOSE 8080
ENTRYPOINT ["segments"]
CMD ["serve"]
