# frozen_string_literal: true

require "json"

require "entitle/version"
require "entitle/errors"
require "entitle/entitle_ext"
require "entitle/decision"
require "entitle/status"
require "entitle/event"
require "entitle/engine"
require "entitle/fork"

# entitle: an embedded entitlement engine. A check (Entitle::Engine#enabled?) is a memory lookup in
# this process, answered from a snapshot that the engine loads from a file or keeps up to date from
# an edge server.
#
#   engine = Entitle::Engine.from_file("catalog.snap")
#   engine.enabled?("cus_123", "sso")          # => true
#   engine.limit("cus_123", "projects")        # => 50, or Float::INFINITY
#   engine.allows?("cus_123", "projects", 49)  # => true
#
# See Entitle::Engine for the whole API and Entitle::Error for the errors.
module Entitle
end
