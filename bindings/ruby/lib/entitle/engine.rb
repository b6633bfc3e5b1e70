# frozen_string_literal: true

require "pathname"

module Entitle
  # An in-process entitlement engine: a snapshot of features, products and customers, and the
  # lookups over it. Safe to share between threads: lookups take no lock and see the content
  # before or after a concurrent update, never a mix.
  #
  # Create one from a file, snapshot bytes or a catalog, or connect it to an edge that keeps it up
  # to date in a background thread:
  #
  #   engine = Entitle::Engine.from_file("catalog.snap")
  #   engine = Entitle::Engine.connect("https://edge.example.com", token: ENV["EDGE_TOKEN"],
  #                                    cache_dir: "tmp/entitle")
  #   engine.wait_ready(5)
  #
  # Lookups (+customer+ and +feature+ are Strings or Symbols; +at:+ a Time or unix seconds):
  # #enabled?, #limit, #allows?, #check, #entitlements. Updates: #replace, #replace_file,
  # #apply_delta. Sync: #wait_ready, #status, #version. Lifetime: #close (idempotent), #closed?,
  # or Engine.open with a block. Calls on a closed engine raise Entitle::ClosedError.
  #
  # Forking servers (Puma cluster mode, Unicorn) need nothing: the gem restarts each syncing
  # engine's thread in every forked child (see Entitle::ForkHook).
  class Engine
    # The durations of Engine.connect, in the order Engine._connect takes them.
    DURATIONS = %i[poll_interval connect_timeout request_timeout max_staleness long_poll max_backoff
                   persist_interval].freeze
    private_constant :DURATIONS

    class << self
      # An engine built from a catalog: a Hash (turned into JSON) or a JSON String, validated and
      # compiled (content version 0). Meant for tests and small applications; production loads
      # snapshots. Raises Entitle::CatalogError naming the path of the first invalid value.
      # A String in an encoding other than UTF-8 is transcoded first, as ids are (a binary String's
      # bytes are taken as UTF-8).
      def from_catalog(catalog)
        json = case catalog
               when Hash then JSON.generate(catalog)
               when String then utf8_text(catalog)
               else raise TypeError, "catalog must be a Hash or a JSON String, not #{catalog.class}"
               end
        _from_catalog_json(json)
      end

      # An engine that keeps itself up to date from the edge at +url+ (http:// or https://), in a
      # background thread. Returns at once: with a snapshot in +cache_dir+ it serves it
      # immediately; otherwise every feature is unknown until the first sync (see #wait_ready). An
      # unreachable edge is not an error: the engine retries and reports it in #status.
      #
      # Durations are in seconds (Integer or Float); nil picks the default:
      # poll_interval:: between manifest checks (default 5, varied by ±20 %)
      # long_poll::     ask the edge to hold manifest requests up to this long and answer as soon
      #                 as a version is published (at most 25); nil or false polls instead
      # max_staleness:: after this long without a successful sync the state is +:stale+ (120)
      # connect_timeout, request_timeout:: per connection (2) and per request (60)
      # max_backoff::   the longest pause between retries after failures (60)
      # persist_interval:: the shortest time between two cache writes after deltas (30)
      #
      # +token+ is sent as a bearer token; +cache_dir+ keeps the last good snapshot for a warm
      # start. +max_artifact_bytes+ is the largest snapshot or delta downloaded (after
      # decompression; nil: 256 MiB): a larger one is refused, reported in #status, and the
      # content kept. Raises Entitle::ConfigError for an invalid URL or token.
      def connect(url, token: nil, cache_dir: nil, poll_interval: nil, long_poll: nil,
                  max_staleness: nil, connect_timeout: nil, request_timeout: nil, max_backoff: nil,
                  persist_interval: nil, max_artifact_bytes: nil)
        raise TypeError, "url must be a String, not #{url.class}" unless url.is_a?(String)
        raise TypeError, "token must be a String or nil, not #{token.class}" unless token.nil? || token.is_a?(String)

        values = {
          poll_interval: poll_interval, connect_timeout: connect_timeout,
          request_timeout: request_timeout, max_staleness: max_staleness,
          long_poll: long_poll == false ? nil : long_poll, max_backoff: max_backoff,
          persist_interval: persist_interval
        }
        millis = DURATIONS.map { |name| millis(name, values.fetch(name)) }
        unless max_artifact_bytes.nil? || (max_artifact_bytes.is_a?(Integer) && max_artifact_bytes.positive?)
          raise TypeError, "max_artifact_bytes must be nil or an Integer, not #{max_artifact_bytes.class}" unless max_artifact_bytes.is_a?(Integer)

          raise ArgumentError, "max_artifact_bytes must be > 0, got #{max_artifact_bytes}"
        end
        _connect(url, token, cache_dir, millis, max_artifact_bytes || 0)
      end

      # Opens an engine: +source+ is an edge URL (http:// or https://; +options+ are those of
      # Engine.connect) or a file path (a snapshot or catalog JSON; no options). With a block,
      # yields the engine, closes it when the block ends and returns the block's value; without
      # one, returns the engine.
      #
      #   Entitle::Engine.open("catalog.snap") { |engine| engine.enabled?("cus_1", "sso") }
      def open(source, **options)
        engine =
          if source.is_a?(String) && source.match?(%r{\Ahttps?://}i)
            connect(source, **options)
          else
            raise ArgumentError, "options #{options.keys.inspect} apply to edge URLs only" unless options.empty?

            from_file(source)
          end
        return engine unless block_given?

        begin
          yield engine
        ensure
          engine.close
        end
      end

      private

      # +text+ as UTF-8 bytes: UTF-8, US-ASCII and binary Strings as they are, others transcoded.
      def utf8_text(text)
        return text if [Encoding::UTF_8, Encoding::US_ASCII, Encoding::BINARY].include?(text.encoding)

        text.encode(Encoding::UTF_8)
      end

      def millis(name, seconds)
        return 0 if seconds.nil?
        raise TypeError, "#{name} must be a number of seconds, not #{seconds.class}" unless seconds.is_a?(Numeric)
        raise ArgumentError, "#{name} must be > 0 seconds, got #{seconds}" unless seconds.positive? && seconds.finite?

        [(seconds * 1000).ceil, 1].max
      end
    end

    # The first event with a sequence number above +after+ (an Entitle::Event), waiting up to
    # +timeout+ seconds (nil: as long as it takes; 0: just look); nil when none came. Pass 0 the
    # first time, then the +seq+ of the last event handled; the engine keeps the last 256 events,
    # so a reader that fell further behind sees a gap in +seq+. Releases the GVL and can be
    # interrupted, as #wait_ready. Raises Entitle::ClosedError once the engine is closed and every
    # event has been read.
    def next_event(after: 0, timeout: nil)
      raise TypeError, "after must be an Integer, not #{after.class}" unless after.is_a?(Integer)
      raise ArgumentError, "after must be >= 0, got #{after}" if after.negative?
      raise TypeError, "timeout must be nil or a number of seconds, not #{timeout.class}" unless timeout.nil? || timeout.is_a?(Numeric)

      fields = _next_event(after, timeout)
      fields && Event.from_fields(fields)
    end

    # Calls the block with each later Entitle::Event of kind +:version_changed+ (from the edge, or
    # from #replace / #apply_delta), on a thread of the engine's own, started by the first call.
    # Exceptions in the block are reported with +warn+ and do not stop the thread; the thread ends
    # when the engine is closed (and keeps the engine from being collected until then). In a
    # forked child the thread is started again. Returns the block.
    def on_change(&block)
      raise ArgumentError, "on_change needs a block" unless block

      @listeners ||= []
      @listeners << block
      @last_seq ||= latest_seq
      # Only the main Ractor forks, and only it may touch the class's registry: engines of other
      # Ractors need not (and cannot) be listed for the fork hook.
      Engine.__listening[self] = true if Ractor.current == Ractor.main
      start_listener
      block
    end

    # Restarts the on_change thread in a forked child (threads do not survive fork). A listener that
    # is alive (in the process that started it, or restarted already) is kept: a second one would
    # call every block twice.
    def __restart_listener
      start_listener if @listeners && !closed?
    end

    class << self
      # Engines with on_change listeners (weak: collected engines drop out).
      def __listening
        @__listening ||= ObjectSpace::WeakMap.new
      end
    end

    # The engine's sync status (an Entitle::Status). Engines that do not sync report +:ready+,
    # their version and zero counters.
    def status
      Status.from_fields(_status_fields)
    end

    private

    def latest_seq
      seq = 0
      while (event = next_event(after: seq, timeout: 0))
        seq = event.seq
      end
      seq
    end

    def start_listener
      return if @listener&.alive?

      @listener = Thread.new do
        loop do
          event = next_event(after: @last_seq)
          next unless event

          @last_seq = event.seq
          next unless event.kind == :version_changed

          @listeners.each do |listener|
            listener.call(event)
          rescue StandardError => e
            warn "entitle: on_change listener raised #{e.class}: #{e.message}"
          end
        end
      rescue ClosedError
        nil
      end
      @listener.name = "entitle-on-change"
    end

    public

    def inspect
      return "#<Entitle::Engine closed>" if closed?

      "#<Entitle::Engine #{syncing? ? "syncing" : "static"} version=#{version}>"
    end
  end
end
