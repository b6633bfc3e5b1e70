# frozen_string_literal: true

module Entitle
  # Where an engine's sync stands (Entitle::Engine#status): a frozen value.
  #
  # state::                +:starting+ (no content yet), +:ready+, +:stale+ (content older than
  #                        max_staleness) or +:failed+ (no content, syncing failed so far)
  # syncing::              whether the engine syncs from an edge (made by Engine.connect)
  # warm_start::           whether the content was read from the cache directory at start
  # long_poll::            whether the edge honors long-polling
  # version::              the content version being served
  # last_success::         when a sync round last succeeded (Time), or nil
  # data_age::             how old the content is, in seconds (Float), or nil
  # last_error_at::        when the last sync error happened (Time), or nil
  # edge_version::         the latest version the edge announced, or nil
  # syncs, failures::      successful and failed sync rounds
  # consecutive_failures:: failed rounds since the last success
  # updates::              rounds that changed the content
  # deltas_applied, snapshots_fetched:: what those rounds downloaded
  # last_error::           the last sync error (kept after recovery), or nil
  # cache_error::          the last problem with the cache directory, or nil
  # lineage::              the lineage of the content being served, or nil
  Status = Struct.new(
    :state, :syncing, :warm_start, :long_poll, :version, :last_success, :data_age, :last_error_at,
    :edge_version, :syncs, :failures, :consecutive_failures, :updates, :deltas_applied,
    :snapshots_fetched, :last_error, :cache_error, :lineage
  ) do
    # Builds the value from Engine#_status_fields (times in unix seconds, the age in ms).
    def self.from_fields(fields)
      status = new(*fields)
      status.last_success = Time.at(status.last_success) if status.last_success
      status.last_error_at = Time.at(status.last_error_at) if status.last_error_at
      status.data_age = status.data_age / 1000.0 if status.data_age
      status.freeze
    end

    # Whether content confirmed within max_staleness is being served.
    def ready? = state == :ready

    # Whether the engine has content to serve (ready or stale).
    def data? = state == :ready || state == :stale

    def syncing? = syncing

    def warm_start? = warm_start

    def long_poll? = long_poll
  end
end
