// Package dockerfile compiles a Dockerfile into executable steps. It is
// pure: it reads only the readers handed to it and never touches the
// network, the filesystem or the environment.
//
// The pipeline has three stages, each testable on its own:
//
//	Parse  bytes -> *File   BuildKit's parser and instructions packages,
//	                        directives (syntax, escape, check), linter
//	                        findings as Warnings, static validation.
//	Plan   *File -> *Plan   global ARGs and automatic platform args, FROM
//	                        expansion, stage references, pruning to what
//	                        the target needs (dependency order).
//	Lower  *Stage + base config -> []Step
//	                        per-instruction expansion with the live ENV and
//	                        ARG state, BuildKit's defaults applied, the
//	                        complete config after every Meta.
//
// Every user-facing error is an *Error whose text starts "Dockerfile:N: ".
//
// Step text (Exec.Text, Copy.Text, Meta.Text) is the instruction keyword
// in upper case followed by a stable rendering of its arguments, used for
// display and for the history created_by:
//
//	RUN make                    shell form: the command line as written
//	                            (RUN is not expanded; flags are omitted)
//	RUN ["echo","hi"]           exec form: JSON
//	COPY --from=b --chown=1 a b /dst/
//	                            flags that were given, expanded sources,
//	                            "<<NAME" per heredoc, the destination as
//	                            written (expanded, not made absolute)
//	ENV A=b C=d, LABEL k=v, ARG K=v K2
//	                            expanded key=value pairs
//	CMD ["/bin/sh","-c","x"]    CMD, ENTRYPOINT and SHELL: the final argv
//	WORKDIR /abs                the resolved absolute directory
//	EXPOSE 80/tcp 53/udp        the normalised port keys
//	HEALTHCHECK --interval=30s ["CMD-SHELL","curl -f x"], HEALTHCHECK NONE
//	ONBUILD RUN echo hi         the trigger as stored in the config
//	USER, VOLUME, STOPSIGNAL, MAINTAINER: the expanded value(s)
//	FROM <image or stage>       the NoHistory Meta that carries a normalised
//	                            base config (see Plan.Lower)
package dockerfile
