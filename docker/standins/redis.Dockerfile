# Stand-in for redis:7-alpine: Debian's redis-server 7.0 on the debootstrap base. The Compose
# file's command (redis-server --appendonly ...) and `redis-cli ping` healthcheck work unchanged.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /data && chown redis:redis /data \
 && test "$(id -u redis):$(id -g redis)" = "100:101"

# As the official image: the data in /data (the append-only file goes to the working dir).
# By number: the account redis-server's package made (checked above).
COPY docker/standins/redis-entrypoint.sh /usr/local/bin/redis-entrypoint
WORKDIR /data
USER 100:101
EXPOSE 6379
ENTRYPOINT ["redis-entrypoint"]
CMD ["redis-server"]
