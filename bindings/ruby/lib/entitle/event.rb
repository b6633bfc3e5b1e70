# frozen_string_literal: true

module Entitle
  # One thing that happened to an engine (Engine#next_event, Engine#on_change): a frozen value.
  #
  # seq::         its sequence number (1 for the engine's first event, then one more each)
  # kind::        +:version_changed+ (a sync, #replace or #apply_delta changed the content),
  #               +:sync_failed+, +:sync_recovered+, +:stale+, +:cache_error+, or +:unknown+
  # old_version, new_version:: the versions before and after a change (otherwise both the current)
  # at::          when it happened (Time)
  # message::     a description (String)
  Event = Struct.new(:seq, :kind, :old_version, :new_version, :at, :message) do
    KINDS = [nil, :version_changed, :sync_failed, :sync_recovered, :stale, :cache_error].freeze

    # Builds the value from Engine#_next_event's fields.
    def self.from_fields(fields)
      seq, kind, old_version, new_version, at_ms, message = fields
      new(seq, KINDS.fetch(kind, nil) || :unknown, old_version, new_version,
          Time.at(at_ms / 1000, at_ms % 1000, :millisecond), message).freeze
    end
  end
end
