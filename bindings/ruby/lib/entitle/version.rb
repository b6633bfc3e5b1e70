# frozen_string_literal: true

module Entitle
  # The gem's version: the same as the entitle crates it is built from (see Entitle.library_version
  # for the linked library's own).
  VERSION = "0.1.0"
end
